//! The job queue: background work (analyses, index builds) that workers inside `serve`
//! or `graftbench worker` claim from the database they share. A claim is a lease the
//! worker renews with [`Database::heartbeat_job`]; a job whose worker died is claimed
//! again once its lease runs out, and the stale worker's later calls find it no longer
//! theirs (each update names the worker and the running state), so a job completes
//! once. Claims are one statement: on PostgreSQL the candidate row is locked with
//! `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different jobs; on SQLite the
//! statement runs under the database's write lock.

use super::{Database, DbError, DbKind};
use crate::clock;
use sqlx::Row;
use std::time::Duration;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for a worker (or for its retry time).
    Queued,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// Finished, with its result.
    Done,
    /// Failed its last attempt, with the error.
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobState::as_str`].
    pub fn parse(name: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What it does, e.g. `analyze`.
    pub kind: String,
    /// Its identity: while one job of a key is queued or running, queueing the same key
    /// gives that job instead of a second one.
    pub key: String,
    /// Its input, as JSON.
    pub payload: serde_json::Value,
    /// Attempts before it ends failed (at least 1).
    pub max_attempts: u32,
    /// How long one attempt may run.
    pub timeout: Duration,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// What it does.
    pub kind: String,
    /// Its identity.
    pub key: String,
    /// Its input (JSON text).
    pub payload: String,
    /// Where it stands.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Seconds one attempt may run.
    pub timeout_secs: i64,
    /// When it may next be claimed.
    pub run_after: String,
    /// The worker holding it.
    pub worker: Option<String>,
    /// Until when that worker's claim holds.
    pub lease_until: Option<String>,
    /// What the worker says it is doing.
    pub phase: String,
    /// How far, 0 to 1.
    pub progress: f64,
    /// The last failure.
    pub error: Option<String>,
    /// The result (JSON text), once done.
    pub result: Option<String>,
    /// When it was queued.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

const JOB_COLUMNS: &str = "id, kind, key, payload, state, attempts, max_attempts, timeout_secs, \
     run_after, worker, lease_until, phase, progress, error, result, created_at, updated_at";

fn job_from_row(r: &sqlx::any::AnyRow) -> Result<Job, DbError> {
    let state: String = r.try_get("state")?;
    Ok(Job {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        key: r.try_get("key")?,
        payload: r.try_get("payload")?,
        state: JobState::parse(&state)
            .ok_or_else(|| DbError::Corrupt(format!("job state {state:?}")))?,
        attempts: r.try_get("attempts")?,
        max_attempts: r.try_get("max_attempts")?,
        timeout_secs: r.try_get("timeout_secs")?,
        run_after: r.try_get("run_after")?,
        worker: r.try_get("worker")?,
        lease_until: r.try_get("lease_until")?,
        phase: r.try_get("phase")?,
        progress: r.try_get("progress")?,
        error: r.try_get("error")?,
        result: r.try_get("result")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The time `after` from now, as stored.
fn from_now(after: Duration) -> String {
    let after = time::Duration::try_from(after).unwrap_or(time::Duration::MAX);
    clock::format(
        time::OffsetDateTime::now_utc()
            .checked_add(after)
            .unwrap_or(time::OffsetDateTime::now_utc()),
    )
}

/// Queues `job` in `conn` (the transaction of the change that asks for it, so that what
/// is accepted is not lost) unless one of its key is queued or running: the job's id, and
/// whether it is new.
pub async fn enqueue_job_in(
    conn: &mut sqlx::AnyConnection,
    job: &NewJob,
) -> Result<(i64, bool), DbError> {
    let now = clock::now();
    let payload = job.payload.to_string();
    // The active job of the key may finish between the two statements: then queue
    // again (a second round always finds one or the other).
    for _ in 0..2 {
        let inserted = sqlx::query(
            "INSERT INTO jobs (kind, key, payload, state, max_attempts, timeout_secs,
                 run_after, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $6, $6)
             ON CONFLICT (key) WHERE state IN ('queued', 'running') DO NOTHING",
        )
        .bind(&job.kind)
        .bind(&job.key)
        .bind(&payload)
        .bind(i64::from(job.max_attempts.max(1)))
        .bind(i64::try_from(job.timeout.as_secs()).unwrap_or(i64::MAX))
        .bind(&now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE key = $1 AND state IN ('queued', 'running')",
        )
        .bind(&job.key)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(id) = id {
            return Ok((id, inserted == 1));
        }
    }
    Err(DbError::Corrupt(format!(
        "job {:?} was neither queued nor found",
        job.key
    )))
}

impl Database {
    /// Queues `job` unless one of its key is queued or running: the job's id, and whether
    /// it is new.
    pub async fn enqueue_job(&self, job: &NewJob) -> Result<(i64, bool), DbError> {
        let mut conn = self.pool().acquire().await?;
        enqueue_job_in(&mut conn, job).await
    }

    /// Claims the oldest job of one of `kinds` (any kind when empty) that is due (or
    /// whose worker's lease ran out) for `worker`, for `lease`; `None` when there is none.
    /// Jobs whose lease ran out on their last attempt end failed first.
    pub async fn claim_job(
        &self,
        worker: &str,
        lease: Duration,
        kinds: &[&str],
    ) -> Result<Option<Job>, DbError> {
        let now = clock::now();
        sqlx::query(
            "UPDATE jobs SET state = 'failed', worker = NULL, lease_until = NULL,
                 updated_at = $1,
                 error = 'its worker stopped answering (the lease ran out) on attempt '
                     || CAST(attempts AS TEXT) || ' of ' || CAST(max_attempts AS TEXT)
             WHERE state = 'running' AND lease_until < $1 AND attempts >= max_attempts",
        )
        .bind(&now)
        .execute(self.pool())
        .await?;
        let lock = match self.kind {
            DbKind::Postgres => "FOR UPDATE SKIP LOCKED",
            DbKind::Sqlite => "",
        };
        let of_kinds = if kinds.is_empty() {
            String::new()
        } else {
            let placeholders: Vec<String> = (4..4 + kinds.len()).map(|i| format!("${i}")).collect();
            format!("AND kind IN ({})", placeholders.join(", "))
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', worker = $1, lease_until = $2,
                 attempts = attempts + 1, phase = '', progress = 0, updated_at = $3
             WHERE id = (SELECT id FROM jobs
                         WHERE ((state = 'queued' AND run_after <= $3)
                                OR (state = 'running' AND lease_until < $3))
                           {of_kinds}
                         ORDER BY id LIMIT 1 {lock})
             RETURNING {JOB_COLUMNS}"
        );
        let mut query = sqlx::query(&sql)
            .bind(worker)
            .bind(from_now(lease))
            .bind(&now);
        for kind in kinds {
            query = query.bind(*kind);
        }
        query
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// Renews `worker`'s lease on job `id` and records its progress. `false` when the job
    /// is no longer the worker's (cancelled, or claimed again after the lease ran out):
    /// the worker stops.
    pub async fn heartbeat_job(
        &self,
        id: i64,
        worker: &str,
        lease: Duration,
        phase: &str,
        progress: f64,
    ) -> Result<bool, DbError> {
        Ok(sqlx::query(
            "UPDATE jobs SET lease_until = $1, phase = $2, progress = $3, updated_at = $4
             WHERE id = $5 AND worker = $6 AND state = 'running'",
        )
        .bind(from_now(lease))
        .bind(phase)
        .bind(progress.clamp(0.0, 1.0))
        .bind(clock::now())
        .bind(id)
        .bind(worker)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// Marks job `id` done with `result`, inside `tx`, the transaction that writes what
    /// the job produced: `false` (and the caller rolls back) when the job is no longer
    /// `worker`'s, so a result is written once however many workers ran the job.
    pub async fn complete_job_in(
        tx: &mut sqlx::AnyConnection,
        id: i64,
        worker: &str,
        result: &serde_json::Value,
    ) -> Result<bool, DbError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'done', result = $1, lease_until = NULL, progress = 1,
                 updated_at = $2
             WHERE id = $3 AND worker = $4 AND state = 'running'",
        )
        .bind(result.to_string())
        .bind(clock::now())
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1)
    }

    /// Records a failed attempt of job `id` by `worker`: queued again for `retry_after`
    /// from now while attempts remain, else failed with `error`. The state it is left in,
    /// or `None` when the job was no longer the worker's.
    pub async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        error: &str,
        retry_after: Duration,
    ) -> Result<Option<JobState>, DbError> {
        let state: Option<String> = sqlx::query_scalar(
            "UPDATE jobs SET
                 state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                 run_after = $1, error = $2, worker = NULL, lease_until = NULL, updated_at = $3
             WHERE id = $4 AND worker = $5 AND state = 'running'
             RETURNING state",
        )
        .bind(from_now(retry_after))
        .bind(error)
        .bind(clock::now())
        .bind(id)
        .bind(worker)
        .fetch_optional(self.pool())
        .await?;
        Ok(state.as_deref().and_then(JobState::parse))
    }

    /// Cancels job `id` if it is queued or running (its worker finds out at its next
    /// heartbeat); whether it was.
    pub async fn cancel_job(&self, id: i64) -> Result<bool, DbError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'cancelled', worker = NULL, lease_until = NULL,
                 updated_at = $1
             WHERE id = $2 AND state IN ('queued', 'running')",
        )
        .bind(clock::now())
        .bind(id)
        .execute(self.pool())
        .await?
        .rows_affected()
            == 1)
    }

    /// Deletes jobs that finished done or cancelled more than `age` ago: their effects
    /// are in the rows they recorded and in the audit trail, and the queue's table would
    /// otherwise grow with every revision and target. A failed job is kept while it is
    /// its key's newest (a failed analysis keeps its patch ineligible until it is queued
    /// again), and goes with the newer job that superseded it: one statement, so a failure
    /// never outlives its successor. How many went.
    pub async fn prune_jobs(&self, age: Duration) -> Result<u64, DbError> {
        let before = clock::format(
            time::OffsetDateTime::now_utc()
                .checked_sub(time::Duration::try_from(age).unwrap_or(time::Duration::MAX))
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        );
        Ok(
            sqlx::query(
                "DELETE FROM jobs WHERE updated_at < $1
               AND (state IN ('done', 'cancelled')
                    OR (state = 'failed'
                        AND EXISTS (SELECT 1 FROM jobs k WHERE k.key = jobs.key AND k.id > jobs.id)))",
            )
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected(),
        )
    }

    /// Job `id`.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, DbError> {
        sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    /// The newest `limit` jobs whose key starts with `prefix`, newest first.
    pub async fn jobs_with_key_prefix(
        &self,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<Job>, DbError> {
        let rows = match key_range_end(prefix) {
            // The keys from `prefix` up to the first string past all its extensions, in
            // byte order: a range over the `jobs_by_key` index.
            Some(end) => {
                let bytewise = match self.kind() {
                    super::DbKind::Postgres => " COLLATE \"C\"",
                    super::DbKind::Sqlite => "",
                };
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs
                     WHERE key{bytewise} >= $1 AND key{bytewise} < $2
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind(prefix)
                .bind(end)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE substr(key, 1, length($1)) = $1
                     ORDER BY id DESC LIMIT $2"
                ))
                .bind(prefix)
                .bind(limit)
                .fetch_all(self.pool())
                .await?
            }
        };
        rows.iter().map(job_from_row).collect()
    }

    /// The newest `limit` jobs, newest first.
    pub async fn jobs(&self, limit: i64) -> Result<Vec<Job>, DbError> {
        sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY id DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(job_from_row)
        .collect()
    }
}

/// The least string greater than every string that starts with `prefix`, in byte order,
/// when `prefix` ends in a printable ASCII character other than `~` (as every job key's
/// prefix does): that character plus one. `None` otherwise (and for an empty prefix).
fn key_range_end(prefix: &str) -> Option<String> {
    let last = prefix.chars().last()?;
    if !(' '..'~').contains(&last) {
        return None;
    }
    let mut end = prefix[..prefix.len() - 1].to_owned();
    end.push(char::from(last as u8 + 1));
    Some(end)
}

#[cfg(test)]
mod key_range_tests {
    use super::key_range_end;

    #[test]
    fn a_prefix_range_ends_just_past_its_last_character() {
        assert_eq!(
            key_range_end("analyze:ab12:").as_deref(),
            Some("analyze:ab12;")
        );
        assert_eq!(key_range_end("register:").as_deref(), Some("register;"));
        // Every extension of the prefix sorts below the end, bytewise.
        for key in [
            "analyze:ab12:",
            "analyze:ab12:7:9f:5",
            "analyze:ab12:\u{10ffff}",
        ] {
            assert!(("analyze:ab12:".."analyze:ab12;").contains(&key), "{key}");
        }
        for prefix in ["", "caf\u{e9}", "x~", "tab\t"] {
            assert_eq!(key_range_end(prefix), None, "{prefix:?}");
        }
    }
}
