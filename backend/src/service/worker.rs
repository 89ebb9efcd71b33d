//! Workers: claim jobs from the queue ([`crate::store::jobs`]), run each with the handler
//! of its kind, renew the lease while it runs (recording the phase and progress the
//! handler reports), and record the outcome: done with its result, queued again after a
//! growing delay while attempts remain, or failed with the error. A job past its timeout,
//! cancelled, or claimed by another worker after this one lost its lease is stopped.

use crate::store::jobs::Job;
use crate::store::{Database, DbError, Tx};
/// What a handler returns (re-exported so that handlers need no futures crate of their own).
pub use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often a running job's progress is written when it changes.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(500);

/// Runs the jobs of one kind.
pub trait JobHandler: Send + Sync + 'static {
    /// The kind it runs.
    fn kind(&self) -> &'static str;
    /// Runs `job`, reporting its phase and progress through `progress`: the result, or
    /// the error to record.
    fn run(
        &self,
        job: Job,
        progress: Progress,
    ) -> BoxFuture<'static, Result<serde_json::Value, String>>;

    /// Writes what the job produced, in `tx`: the transaction that marks the job done, so
    /// that it is written once however many workers ran the job (one whose lease ran out
    /// finds the job no longer its own and rolls back). An error fails the attempt.
    fn record<'a>(
        &'a self,
        tx: &'a mut Tx,
        job: &'a Job,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), String>> {
        let _ = (tx, job, result);
        Box::pin(async { Ok(()) })
    }
}

/// A job's payload as its handler's input type; an error names what is wrong with it.
pub fn payload<T: serde::de::DeserializeOwned>(job: &Job) -> Result<T, String> {
    serde_json::from_str(&job.payload).map_err(|e| format!("the job's payload: {e}"))
}

/// Where a running job stands, as its handler reports it; sent with the next heartbeat.
/// It also tells the handler's blocking work when the worker has left the job (cancelled,
/// timed out, or taken over by another worker): aborting the async task does not stop a
/// thread, so blocking work asks [`Progress::stopped`] between steps and kills the
/// programs it runs.
#[derive(Debug, Clone)]
pub struct Progress {
    sender: Arc<watch::Sender<(String, f64)>>,
    stopped: Arc<AtomicBool>,
}

/// The error of work given up because its job was left.
pub const STOPPED: &str = "stopped: the job was cancelled, timed out or taken over";

impl Progress {
    /// Progress nobody follows, for work run outside a worker.
    pub fn detached() -> Progress {
        Progress {
            sender: Arc::new(watch::channel((String::new(), 0.0)).0),
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The phase (`indexing`) and how far, 0 to 1.
    pub fn set(&self, phase: &str, fraction: f64) {
        self.sender
            .send_replace((phase.to_owned(), fraction.clamp(0.0, 1.0)));
    }

    /// Whether the worker has left the job: its work should end now.
    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Leaves the job, as a worker does (tests of work that must stop).
    #[cfg(test)]
    pub(crate) fn leave(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// [`STOPPED`] as an error once the worker has left the job.
    pub fn check(&self) -> Result<(), String> {
        if self.stopped() {
            Err(STOPPED.to_owned())
        } else {
            Ok(())
        }
    }
}

/// How a worker claims and runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its name in the jobs it holds (host and process, say).
    pub name: String,
    /// How long a claim holds without a heartbeat (heartbeats come three times a lease).
    pub lease: Duration,
    /// How long to wait when no job is due.
    pub poll: Duration,
    /// The delay before the first retry; it doubles with each attempt, up to an hour.
    pub backoff: Duration,
}

/// The handlers a worker runs, by kind.
pub type Handlers = Arc<HashMap<&'static str, Arc<dyn JobHandler>>>;

/// Handlers by kind.
pub fn handlers(list: Vec<Arc<dyn JobHandler>>) -> Handlers {
    Arc::new(list.into_iter().map(|h| (h.kind(), h)).collect())
}

/// Claims and runs jobs of the kinds in `handlers` until `stop` turns true.
pub async fn run(
    db: Database,
    handlers: Handlers,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let kinds: Vec<&str> = handlers.keys().copied().collect();
    while !*stop.borrow() {
        match db.claim_job(&config.name, config.lease, &kinds).await {
            Ok(Some(job)) => {
                if let Err(e) = run_one(&db, &handlers, &config, job).await {
                    tracing::error!(error = %e, worker = %config.name, "recording a job's outcome failed");
                }
            }
            Ok(None) => {
                let _ = tokio::time::timeout(config.poll, stop.changed()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, worker = %config.name, "claiming a job failed");
                let _ = tokio::time::timeout(config.poll, stop.changed()).await;
            }
        }
    }
}

/// The delay before the retry that follows attempt `attempts`.
fn backoff(base: Duration, attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    base.saturating_mul(1u32 << doublings)
        .min(Duration::from_secs(3600))
}

/// A handler's task, stopped when the worker leaves it, however it leaves (done,
/// cancelled, timed out, or a database error on the way): the task is aborted and its
/// blocking work told through [`Progress::stopped`].
struct Running {
    task: tokio::task::JoinHandle<Result<serde_json::Value, String>>,
    stopped: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

async fn run_one(
    db: &Database,
    handlers: &Handlers,
    config: &WorkerConfig,
    job: Job,
) -> Result<(), DbError> {
    let (id, attempts) = (job.id, job.attempts);
    let name = config.name.as_str();
    let Some(handler) = handlers.get(job.kind.as_str()).cloned() else {
        db.fail_job(
            id,
            name,
            &format!("no worker runs jobs of kind {:?}", job.kind),
            config.backoff,
        )
        .await?;
        return Ok(());
    };
    let timeout = Duration::from_secs(u64::try_from(job.timeout_secs).unwrap_or(0).max(1));
    let (sender, receiver) = watch::channel((String::new(), 0.0));
    let stopped = Arc::new(AtomicBool::new(false));
    let progress = Progress {
        sender: Arc::new(sender),
        stopped: Arc::clone(&stopped),
    };
    let mut task = Running {
        task: tokio::spawn(handler.run(job.clone(), progress)),
        stopped,
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // Progress is written as it changes, at most twice a second, so that pages follow a
    // job closely; without change, a heartbeat every third of the lease keeps the claim.
    let tick = (config.lease / 3).min(PROGRESS_INTERVAL);
    let mut beats = tokio::time::interval(tick);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beats.tick().await;
    let mut last_beat = tokio::time::Instant::now();
    let mut written = (String::new(), 0.0);
    loop {
        tokio::select! {
            outcome = &mut task.task => {
                match outcome {
                    Ok(Ok(result)) => {
                        let mut tx = db.begin().await?;
                        if Database::complete_job_in(&mut tx, id, name, &result).await? {
                            match handler.record(&mut tx, &job, &result).await {
                                Ok(()) => tx.commit().await?,
                                Err(error) => {
                                    drop(tx);
                                    let error = format!("recording the result failed: {error}");
                                    db.fail_job(id, name, &error, backoff(config.backoff, attempts)).await?;
                                }
                            }
                        }
                    }
                    Ok(Err(error)) => {
                        db.fail_job(id, name, &error, backoff(config.backoff, attempts)).await?;
                    }
                    Err(joined) => {
                        // A panic's message may name anything on the server: the log has it,
                        // the job (which every user sees) says where to look.
                        tracing::error!(job = id, error = %joined, "a job's handler stopped");
                        let error = "the job's handler stopped unexpectedly (the worker's log says why)".to_owned();
                        db.fail_job(id, name, &error, backoff(config.backoff, attempts)).await?;
                    }
                }
                return Ok(());
            }
            _ = beats.tick() => {
                let now = receiver.borrow().clone();
                if now == written && last_beat.elapsed() < config.lease / 3 {
                    continue;
                }
                if !db.heartbeat_job(id, name, config.lease, &now.0, now.1).await? {
                    // Cancelled, or another worker has it now: the task stops with `task`.
                    return Ok(());
                }
                last_beat = tokio::time::Instant::now();
                written = now;
            }
            _ = &mut deadline => {
                let error = format!("timed out after {} s", timeout.as_secs());
                db.fail_job(id, name, &error, backoff(config.backoff, attempts)).await?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_an_hour() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 1), Duration::from_secs(10));
        assert_eq!(backoff(base, 2), Duration::from_secs(20));
        assert_eq!(backoff(base, 4), Duration::from_secs(80));
        assert_eq!(backoff(base, 40), Duration::from_secs(3600));
        assert_eq!(backoff(base, 0), Duration::from_secs(10));
    }
}
