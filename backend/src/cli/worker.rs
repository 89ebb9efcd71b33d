//! `graftbench worker`: workers without a web server, against the database `serve`
//! uses (on other machines, for the heavy jobs), and the options `serve` shares.

use super::global::Global;
use anyhow::{Context, Result};
use clap::Args;
use graftbench::service::background::{self, Workers};
use graftbench::service::targets::TargetSettings;
use graftbench::store::Database;
use graftbench_domain::eligibility::{LoadedPolicy, Policy};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Options of the workers (in `serve` and `worker`).
#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// Jobs run at once by this process (registering and indexing kernel targets,
    /// analysing revisions); 0 runs none here (run `graftbench worker` elsewhere).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// The only directory in-house kernel builds may be registered from; without it,
    /// only distribution releases can be registered.
    #[arg(long, env = "GRAFTBENCH_TARGET_ROOT")]
    pub target_root: Option<PathBuf>,
    /// Seconds a job stays claimed without a heartbeat: a worker that died is replaced
    /// after this long.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub job_lease: u64,
}

#[derive(Args)]
pub struct WorkerCommandArgs {
    #[command(flatten)]
    workers: WorkerArgs,
}

/// Starts the workers `args` asks for on `db`.
pub async fn start(
    global: &Global,
    db: &Database,
    args: &WorkerArgs,
    policy: Arc<Policy>,
    stop: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    if let Some(root) = &args.target_root {
        anyhow::ensure!(
            root.is_dir(),
            "--target-root {}: not a directory",
            root.display()
        );
    }
    let settings = Arc::new(TargetSettings::new(
        &global.data_dir,
        args.target_root.clone(),
    ));
    let workers = Workers {
        count: args.workers,
        lease: Duration::from_secs(args.job_lease),
        name: background::process_name(),
        backoff: Duration::from_secs(10),
    };
    background::start(db, settings, policy, &workers, stop)
        .await
        .context("starting the workers")
}

pub async fn run(global: &Global, args: WorkerCommandArgs) -> Result<()> {
    anyhow::ensure!(args.workers.workers > 0, "--workers must be at least 1");
    let policy = LoadedPolicy::load(&global.data_dir)?;
    global.create_data_dir()?;
    let db = global.open_database().await?;
    let (stop_tx, stop) = watch::channel(false);
    let tasks = start(global, &db, &args.workers, Arc::new(policy.policy), stop).await?;
    eprintln!(
        "graftbench worker: {} worker(s) running as {}; Ctrl-C stops them",
        tasks.len(),
        background::process_name()
    );
    let _ = tokio::signal::ctrl_c().await;
    let _ = stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    db.close().await;
    Ok(())
}
