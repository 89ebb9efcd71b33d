//! The job queue against a real database, on SQLite and on PostgreSQL: one job per key,
//! claims that do not collide, leases that run out, retries that end, cancellation.

use graftbench::service::worker::{self, BoxFuture, JobHandler, Progress, WorkerConfig};
use graftbench::store::jobs::{Job, JobState, NewJob};
use graftbench::store::Database;
use graftbench_tests::{on_both_databases, Backend, TestServer};
use std::time::Duration;

on_both_databases!(
    a_job_is_queued_once_claimed_once_and_completed_once,
    a_failing_job_is_retried_then_ends_failed_with_its_error,
    a_job_whose_worker_stopped_answering_is_claimed_again_and_completes_once,
    a_cancelled_job_is_not_claimed_and_its_worker_finds_out,
    racing_workers_run_each_of_fifty_jobs_exactly_once,
    a_worker_runs_its_kinds_and_gives_up_on_a_failure_after_its_retries,
    a_worker_stops_a_job_past_its_timeout_or_cancelled,
    old_done_and_cancelled_jobs_are_pruned_and_failed_ones_kept,
    jobs_are_found_by_the_start_of_their_key_newest_first,
);

const LEASE: Duration = Duration::from_secs(60);

fn job(key: &str, max_attempts: u32) -> NewJob {
    NewJob {
        kind: "test".into(),
        key: key.into(),
        payload: serde_json::json!({ "key": key }),
        max_attempts,
        timeout: Duration::from_secs(30),
    }
}

async fn complete(db: &Database, id: i64, worker: &str) -> bool {
    let mut tx = db.pool().begin().await.unwrap();
    let done = Database::complete_job_in(&mut tx, id, worker, &serde_json::json!({ "by": worker }))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    done
}

async fn a_job_is_queued_once_claimed_once_and_completed_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let (id, new) = db.enqueue_job(&job("analyze:1", 3)).await.unwrap();
    assert!(new);
    assert_eq!(
        db.enqueue_job(&job("analyze:1", 3)).await.unwrap(),
        (id, false)
    );
    let claimed = db
        .claim_job("w1", LEASE, &[])
        .await
        .unwrap()
        .expect("a job is due");
    assert_eq!(
        (claimed.id, claimed.state, claimed.attempts),
        (id, JobState::Running, 1)
    );
    assert_eq!(claimed.payload, r#"{"key":"analyze:1"}"#);
    assert!(
        db.claim_job("w2", LEASE, &[]).await.unwrap().is_none(),
        "claimed once"
    );
    // Still the same job while it runs.
    assert_eq!(
        db.enqueue_job(&job("analyze:1", 3)).await.unwrap(),
        (id, false)
    );
    assert!(db
        .heartbeat_job(id, "w1", LEASE, "indexing", 0.5)
        .await
        .unwrap());
    assert_eq!(db.job(id).await.unwrap().unwrap().phase, "indexing");
    assert!(!complete(db, id, "w2").await, "not w2's");
    assert!(complete(db, id, "w1").await);
    assert!(!complete(db, id, "w1").await, "completed once");
    let done = db.job(id).await.unwrap().unwrap();
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.result.as_deref(), Some(r#"{"by":"w1"}"#));
    // Done, the key may be queued again.
    let (again, new) = db.enqueue_job(&job("analyze:1", 3)).await.unwrap();
    assert!(new && again != id);
    server.stop().await;
}

async fn a_failing_job_is_retried_then_ends_failed_with_its_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let (id, _) = db.enqueue_job(&job("flaky", 3)).await.unwrap();
    for attempt in 1..=3 {
        let claimed = db
            .claim_job("w", LEASE, &[])
            .await
            .unwrap()
            .expect("due again");
        assert_eq!((claimed.id, claimed.attempts), (id, attempt));
        let error = format!("attempt {attempt} broke");
        let left = db.fail_job(id, "w", &error, Duration::ZERO).await.unwrap();
        let expected = if attempt < 3 {
            JobState::Queued
        } else {
            JobState::Failed
        };
        assert_eq!(left, Some(expected));
    }
    assert!(db.claim_job("w", LEASE, &[]).await.unwrap().is_none());
    let failed = db.job(id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error.as_deref(), Some("attempt 3 broke"));
    // A retry waits for its time.
    let (later, _) = db.enqueue_job(&job("later", 2)).await.unwrap();
    db.claim_job("w", LEASE, &[]).await.unwrap().unwrap();
    db.fail_job(later, "w", "not yet", Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(
        db.claim_job("w", LEASE, &[]).await.unwrap().is_none(),
        "backing off"
    );
    server.stop().await;
}

async fn a_job_whose_worker_stopped_answering_is_claimed_again_and_completes_once(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let (id, _) = db.enqueue_job(&job("index", 2)).await.unwrap();
    // w1's lease is over as soon as it is given: as if w1 had been killed.
    let first = db
        .claim_job("w1", Duration::ZERO, &[])
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = db
        .claim_job("w2", LEASE, &[])
        .await
        .unwrap()
        .expect("the lease ran out");
    assert_eq!((first.id, second.id, second.attempts), (id, id, 2));
    // w1 comes back: the job is no longer its.
    assert!(!db
        .heartbeat_job(id, "w1", LEASE, "late", 0.9)
        .await
        .unwrap());
    assert!(!complete(db, id, "w1").await);
    assert!(complete(db, id, "w2").await);
    assert_eq!(
        db.job(id).await.unwrap().unwrap().result.as_deref(),
        Some(r#"{"by":"w2"}"#)
    );
    // On the last attempt, a lease that runs out ends the job failed, with why.
    let (last, _) = db.enqueue_job(&job("index-once", 1)).await.unwrap();
    db.claim_job("w1", Duration::ZERO, &[])
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(db.claim_job("w2", LEASE, &[]).await.unwrap().is_none());
    let failed = db.job(last).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("(the lease ran out) on attempt 1 of 1")),
        "{:?}",
        failed.error
    );
    server.stop().await;
}

async fn a_cancelled_job_is_not_claimed_and_its_worker_finds_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let (queued, _) = db.enqueue_job(&job("a", 3)).await.unwrap();
    assert!(db.cancel_job(queued).await.unwrap());
    assert!(db.claim_job("w", LEASE, &[]).await.unwrap().is_none());
    let (running, _) = db.enqueue_job(&job("b", 3)).await.unwrap();
    db.claim_job("w", LEASE, &[]).await.unwrap().unwrap();
    assert!(db.cancel_job(running).await.unwrap());
    assert!(!db
        .heartbeat_job(running, "w", LEASE, "", 0.1)
        .await
        .unwrap());
    assert!(!complete(db, running, "w").await);
    assert!(!db.cancel_job(running).await.unwrap(), "already over");
    assert_eq!(
        db.job(running).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    server.stop().await;
}

async fn racing_workers_run_each_of_fifty_jobs_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    for n in 0..50 {
        server
            .db
            .enqueue_job(&job(&format!("job-{n}"), 1))
            .await
            .unwrap();
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let db = server.db.clone();
        workers.push(tokio::spawn(async move {
            let name = format!("w{w}");
            let mut ran = Vec::new();
            while let Some(claimed) = db.claim_job(&name, LEASE, &[]).await.unwrap() {
                assert!(complete(&db, claimed.id, &name).await);
                ran.push(claimed.id);
            }
            ran
        }));
    }
    let mut ran = Vec::new();
    for worker in workers {
        ran.extend(worker.await.unwrap());
    }
    ran.sort_unstable();
    let mut each = ran.clone();
    each.dedup();
    assert_eq!(
        (ran.len(), each.len()),
        (50, 50),
        "each job ran exactly once"
    );
    let jobs = server.db.jobs(100).await.unwrap();
    assert!(jobs
        .iter()
        .all(|j| j.state == JobState::Done && j.attempts == 1));
    server.stop().await;
}

/// Answers with its payload.
struct Echo;
/// Always fails.
struct Fail;
/// Sleeps a minute, saying so.
struct Sleep;

impl JobHandler for Echo {
    fn kind(&self) -> &'static str {
        "echo"
    }
    fn run(&self, job: Job, _: Progress) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        Box::pin(async move { serde_json::from_str(&job.payload).map_err(|e| e.to_string()) })
    }
}

impl JobHandler for Fail {
    fn kind(&self) -> &'static str {
        "fail"
    }
    fn run(&self, job: Job, _: Progress) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        Box::pin(async move { Err(format!("boom on attempt {}", job.attempts)) })
    }
}

impl JobHandler for Sleep {
    fn kind(&self) -> &'static str {
        "sleep"
    }
    fn run(
        &self,
        _: Job,
        progress: Progress,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>> {
        Box::pin(async move {
            progress.set("sleeping", 0.5);
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(serde_json::Value::Null)
        })
    }
}

fn of_kind(kind: &str, key: &str, max_attempts: u32, timeout: Duration) -> NewJob {
    NewJob {
        kind: kind.into(),
        timeout,
        ..job(key, max_attempts)
    }
}

/// Starts a worker for echo, fail and sleep jobs; send `true` to stop it.
fn start_worker(
    db: &Database,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let handlers = worker::handlers(vec![
        std::sync::Arc::new(Echo),
        std::sync::Arc::new(Fail),
        std::sync::Arc::new(Sleep),
    ]);
    let config = WorkerConfig {
        name: "test-worker".into(),
        lease: Duration::from_millis(600),
        poll: Duration::from_millis(20),
        backoff: Duration::ZERO,
    };
    let handle = tokio::spawn(worker::run(db.clone(), handlers, config, stopped));
    (stop, handle)
}

/// Job `id` once `done` says so (within 20 s).
async fn wait_for(db: &Database, id: i64, done: impl Fn(&Job) -> bool) -> Job {
    for _ in 0..1000 {
        let job = db.job(id).await.unwrap().unwrap();
        if done(&job) {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never got there: {:?}", db.job(id).await.unwrap());
}

async fn a_worker_runs_its_kinds_and_gives_up_on_a_failure_after_its_retries(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let minute = Duration::from_secs(60);
    let (echo, _) = db
        .enqueue_job(&of_kind("echo", "e", 3, minute))
        .await
        .unwrap();
    let (fail, _) = db
        .enqueue_job(&of_kind("fail", "f", 2, minute))
        .await
        .unwrap();
    let (other, _) = db
        .enqueue_job(&of_kind("other", "o", 3, minute))
        .await
        .unwrap();
    let (stop, handle) = start_worker(db);
    let done = wait_for(db, echo, |j| j.state == JobState::Done).await;
    assert_eq!(done.result.as_deref(), Some(r#"{"key":"e"}"#));
    let failed = wait_for(db, fail, |j| j.state == JobState::Failed).await;
    assert_eq!(failed.attempts, 2);
    assert_eq!(failed.error.as_deref(), Some("boom on attempt 2"));
    // A kind this worker does not run stays for one that does.
    assert_eq!(
        db.job(other).await.unwrap().unwrap().state,
        JobState::Queued
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
    server.stop().await;
}

async fn a_worker_stops_a_job_past_its_timeout_or_cancelled(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let (stop, handle) = start_worker(db);
    let (late, _) = db
        .enqueue_job(&of_kind("sleep", "late", 1, Duration::from_secs(1)))
        .await
        .unwrap();
    let timed_out = wait_for(db, late, |j| j.state == JobState::Failed).await;
    assert_eq!(timed_out.error.as_deref(), Some("timed out after 1 s"));
    // The progress the handler reports reaches the job with the heartbeat; a
    // cancellation reaches the worker with the next one, and it moves on.
    let (long, _) = db
        .enqueue_job(&of_kind("sleep", "long", 1, Duration::from_secs(60)))
        .await
        .unwrap();
    let running = wait_for(db, long, |j| j.phase == "sleeping").await;
    assert_eq!((running.state, running.progress), (JobState::Running, 0.5));
    assert!(db.cancel_job(long).await.unwrap());
    let (next, _) = db
        .enqueue_job(&of_kind("echo", "next", 1, Duration::from_secs(60)))
        .await
        .unwrap();
    wait_for(db, next, |j| j.state == JobState::Done).await;
    assert_eq!(
        db.job(long).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
    server.stop().await;
}

async fn old_done_and_cancelled_jobs_are_pruned_and_failed_ones_kept(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    let mut ids = std::collections::BTreeMap::new();
    for key in [
        "old-done",
        "old-cancelled",
        "old-failed",
        "old-queued",
        "new-done",
    ] {
        let (id, _) = db.enqueue_job(&job(key, 1)).await.unwrap();
        ids.insert(key, id);
    }
    // A failure, then the job of its key that succeeded: they go together.
    let (failed_first, _) = db.enqueue_job(&job("old-retried", 1)).await.unwrap();
    sqlx::query("UPDATE jobs SET state = 'failed' WHERE id = $1")
        .bind(failed_first)
        .execute(db.pool())
        .await
        .unwrap();
    let (then_done, new) = db.enqueue_job(&job("old-retried", 1)).await.unwrap();
    assert!(new);
    sqlx::query("UPDATE jobs SET state = 'done' WHERE id = $1")
        .bind(then_done)
        .execute(db.pool())
        .await
        .unwrap();
    // Ended as each would, a month and more ago but for one.
    let mut tx = db.pool().begin().await.unwrap();
    for (key, state) in [
        ("old-done", "done"),
        ("old-cancelled", "cancelled"),
        ("old-failed", "failed"),
        ("new-done", "done"),
    ] {
        sqlx::query("UPDATE jobs SET state = $1, worker = NULL, lease_until = NULL WHERE id = $2")
            .bind(state)
            .bind(ids[key])
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE jobs SET updated_at = '2026-01-01T00:00:00.000Z' WHERE key LIKE 'old-%'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let pruned = db
        .prune_jobs(graftbench::service::background::KEEP_FINISHED_JOBS)
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    let left: Vec<String> = db
        .jobs(100)
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.key)
        .collect();
    assert_eq!(left, ["new-done", "old-queued", "old-failed"]);
    assert_eq!(db.prune_jobs(Duration::from_secs(3600)).await.unwrap(), 0);
    server.stop().await;
}

async fn jobs_are_found_by_the_start_of_their_key_newest_first(backend: Backend) {
    let server = TestServer::start(backend).await;
    let db = &server.db;
    // Keys that sort next to the prefix's range bytewise (`;` follows `:`, upper case
    // precedes lower) or share its letters but not its bytes.
    let mut ids = Vec::new();
    for key in [
        "analyze:ab:1",
        "analyze:abc:1",
        "analyze:ab;1",
        "analyze:AB:1",
        "analyze:ab:\u{e9}t\u{e9}",
        "analyze:ab:2",
        "register:1",
    ] {
        ids.push(db.enqueue_job(&job(key, 1)).await.unwrap().0);
    }
    let keys = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.key).collect::<Vec<_>>();
    assert_eq!(
        keys(db.jobs_with_key_prefix("analyze:ab:", 10).await.unwrap()),
        ["analyze:ab:2", "analyze:ab:\u{e9}t\u{e9}", "analyze:ab:1"]
    );
    assert_eq!(
        keys(db.jobs_with_key_prefix("analyze:ab:", 1).await.unwrap()),
        ["analyze:ab:2"]
    );
    assert_eq!(
        keys(db.jobs_with_key_prefix("register:", 10).await.unwrap()),
        ["register:1"]
    );
    assert_eq!(
        db.jobs_with_key_prefix("analyze:", 10).await.unwrap().len(),
        6
    );
    // A prefix the index range does not serve (a non-ASCII end) is still answered.
    assert_eq!(
        keys(
            db.jobs_with_key_prefix("analyze:ab:\u{e9}", 10)
                .await
                .unwrap()
        ),
        ["analyze:ab:\u{e9}t\u{e9}"]
    );
    assert!(db
        .jobs_with_key_prefix("none:", 10)
        .await
        .unwrap()
        .is_empty());
    server.stop().await;
}
