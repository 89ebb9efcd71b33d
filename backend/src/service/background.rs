//! The background work a Graftbench process runs: the job handlers (registering and
//! indexing targets, analysing revisions) and the workers that run them, inside `serve`
//! or alone in `graftbench worker`.

use super::analysis::AnalyzeHandler;
use super::targets::{self, RegisterHandler, ReindexHandler, TargetSettings};
use super::worker::{self, Handlers, WorkerConfig};
use crate::store::{Database, DbError};
use graftbench_domain::eligibility::Policy;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long jobs that ended done or cancelled are kept (pruned when workers start).
pub const KEEP_FINISHED_JOBS: Duration = Duration::from_secs(30 * 24 * 3600);

/// The handlers of every job kind Graftbench queues.
pub fn handlers(db: &Database, settings: Arc<TargetSettings>, policy: Arc<Policy>) -> Handlers {
    worker::handlers(vec![
        Arc::new(RegisterHandler {
            settings: Arc::clone(&settings),
            db: db.clone(),
        }),
        Arc::new(ReindexHandler {
            db: db.clone(),
            settings: Arc::clone(&settings),
        }),
        Arc::new(AnalyzeHandler {
            db: db.clone(),
            policy,
            settings,
        }),
    ])
}

/// How many workers, with what lease.
#[derive(Debug, Clone)]
pub struct Workers {
    /// Workers in this process (0: none).
    pub count: usize,
    /// Their lease.
    pub lease: Duration,
    /// What they call themselves, before their number (host and process id, say).
    pub name: String,
    /// The delay before a failed job's first retry (it doubles with each attempt).
    pub backoff: Duration,
}

/// Starts `workers.count` workers on their own tasks after tidying what dead workers
/// left and queueing analyses a new report version needs; they stop when `stop` turns
/// true. The tasks, to wait for.
pub async fn start(
    db: &Database,
    settings: Arc<TargetSettings>,
    policy: Arc<Policy>,
    workers: &Workers,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, DbError> {
    if workers.count == 0 {
        return Ok(Vec::new());
    }
    targets::sweep_partial(db, &settings).await?;
    let queued = super::analysis_queue::queue_missing(db).await?;
    if queued > 0 {
        tracing::info!(
            queued,
            "analyses queued for revisions without a current report"
        );
    }
    let handlers = handlers(db, settings, policy);
    let pruning = tokio::spawn(prune_daily(db.clone(), stop.clone()));
    Ok(std::iter::once(pruning)
        .chain((0..workers.count).map(|n| {
            let config = WorkerConfig {
                name: format!("{}/{n}", workers.name),
                lease: workers.lease,
                poll: Duration::from_millis(500),
                backoff: workers.backoff,
            };
            tokio::spawn(worker::run(
                db.clone(),
                Arc::clone(&handlers),
                config,
                stop.clone(),
            ))
        }))
        .collect())
}

/// Deletes old finished jobs now and once a day until `stop` turns true (every replica
/// may: a delete done twice deletes nothing more).
async fn prune_daily(db: Database, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match db.prune_jobs(KEEP_FINISHED_JOBS).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "finished jobs older than 30 days deleted"),
            Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
        }
        if let Ok(Err(_)) =
            tokio::time::timeout(Duration::from_secs(24 * 3600), stop.changed()).await
        {
            // Nobody can tell it to stop any more: the process is ending.
            return;
        }
    }
}

/// A name for this process's workers: host name and process id.
pub fn process_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}
