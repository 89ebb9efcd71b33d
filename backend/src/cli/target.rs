//! `graftbench target`: kernel targets from the server's command line (as the `system`
//! actor in the audit trail, like `graftbench user`). `add` queues the registration
//! and follows it with a progress bar, running it here unless a worker elsewhere
//! (in `serve`, or `graftbench worker`) takes it first.

use super::global::{write_stdout, Global};
use super::worker::WorkerArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use graftbench::service::targets::{self, TargetRequest, TargetSettings};
use graftbench::store::jobs::JobState;
use graftbench_domain::eligibility::LoadedPolicy;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum TargetCommand {
    /// Registers a kernel build: a Debian release (fetched with apt) or an in-house
    /// build's files under --target-root; waits for it with a progress bar.
    Add(AddArgs),
    /// Lists the targets.
    List,
    /// Retires a target: kept with its analyses, analysed for no more.
    Retire {
        /// The target's name.
        name: String,
    },
}

#[derive(Args)]
pub struct AddArgs {
    /// A Debian kernel release, e.g. 6.1.0-56-cloud-amd64.
    #[arg(long, conflicts_with = "vmlinux")]
    release: Option<String>,
    /// With --release: also fetch and unpack its source package (about 140 MB), which
    /// fixes written against other trees are mapped onto.
    #[arg(long, requires = "release")]
    with_source: bool,
    /// An in-house build's vmlinux with debug information (under --target-root).
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// Its modules with debug information.
    #[arg(long, requires = "vmlinux")]
    modules_dir: Option<PathBuf>,
    /// Its kbuild directory.
    #[arg(long, requires = "vmlinux")]
    kbuild_dir: Option<PathBuf>,
    /// Its source tree.
    #[arg(long, requires = "vmlinux")]
    source_dir: Option<PathBuf>,
    /// `uname -r` when the image has no banner.
    #[arg(long, requires = "vmlinux")]
    kernel_release: Option<String>,
    /// The name (default: the release).
    #[arg(long)]
    name: Option<String>,
    /// Queue it and return (a worker elsewhere runs it).
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    workers: WorkerArgs,
}

fn text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.display().to_string())
}

pub async fn run(global: &Global, command: TargetCommand) -> Result<()> {
    let db = global.open_database().await?;
    match command {
        TargetCommand::List => {
            let mut out = String::new();
            for t in db.targets().await? {
                out.push_str(&format!(
                    "{:<28} {:<24} {:<7} {:>7} functions  build-id {}{}\n",
                    t.name,
                    t.kernel_release,
                    t.origin,
                    t.functions,
                    t.build_id,
                    if t.is_active() { "" } else { "  (retired)" }
                ));
            }
            write_stdout(&out)
        }
        TargetCommand::Retire { name } => {
            let target = db
                .target_named(&name, "")
                .await?
                .with_context(|| format!("there is no target named {name}"))?;
            targets::retire_as(&db, "system", target.id).await?;
            println!("retired {name}");
            Ok(())
        }
        TargetCommand::Add(args) => add(global, &db, args).await,
    }
}

async fn add(global: &Global, db: &graftbench::store::Database, args: AddArgs) -> Result<()> {
    let settings = TargetSettings::new(&global.data_dir, args.workers.target_root.clone());
    let request = TargetRequest {
        release: args.release.clone(),
        with_source: args.with_source,
        vmlinux: text(&args.vmlinux),
        modules_dir: text(&args.modules_dir),
        kbuild_dir: text(&args.kbuild_dir),
        source_dir: text(&args.source_dir),
        name: args.name.clone(),
        kernel_release: args.kernel_release.clone(),
    };
    let queued = targets::request_as(db, &settings, "system", request).await?;
    eprintln!(
        "registration of {} queued as job {}{}",
        queued.name,
        queued.job,
        if queued.new {
            ""
        } else {
            " (it was queued already)"
        }
    );
    if args.no_wait {
        return Ok(());
    }
    // A worker here, for this job and whatever else is due, until the job ends.
    let policy = LoadedPolicy::load(&global.data_dir)?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut workers = args.workers.clone();
    workers.workers = workers.workers.max(1);
    let tasks = super::worker::start(global, db, &workers, Arc::new(policy.policy), stop).await?;
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {percent:>3}% ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let job = loop {
        let Some(job) = db.job(queued.job).await? else {
            bail!("job {} is gone", queued.job);
        };
        bar.set_message(if job.phase.is_empty() {
            job.state.as_str().to_owned()
        } else {
            job.phase.clone()
        });
        bar.set_position((job.progress * 1000.0) as u64);
        if !matches!(job.state, JobState::Queued | JobState::Running) {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    for task in tasks {
        task.abort();
    }
    match job.state {
        JobState::Done => {
            let target = db
                .target_named(&queued.name, "")
                .await?
                .with_context(|| format!("target {} is missing", queued.name))?;
            println!(
                "registered {}: build-id {}, {} functions, {} inline sites, {} clones",
                target.name, target.build_id, target.functions, target.inline_sites, target.clones
            );
            Ok(())
        }
        other => bail!(
            "the registration {}: {}",
            other.as_str(),
            job.error.unwrap_or_default()
        ),
    }
}
