//! `graftbench serve`: the web server, with the checks that must pass before it listens.

use super::global::Global;
use anyhow::{bail, Context, Result};
use clap::Args;
use graftbench::store;
use graftbench::web::{self, ServerConfig};
use graftbench_domain::eligibility::LoadedPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory with the built browser bundle (`pkg/`) and stylesheet (`style/`).
    #[arg(long, env = "GRAFTBENCH_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Seed demo users (one per role) and demo fixes, and register a kernel target for
    /// them in the background (the newest Debian 6.1 cloud build, about 420 MB, on the
    /// first start); loopback addresses only.
    #[arg(long)]
    demo: bool,
    /// With --demo: the kernel build to register instead of Debian's, a directory under
    /// --target-root holding `vmlinux` (and `source/`, its source tree, when there is
    /// one), for a machine without the package archive.
    #[arg(long, requires = "demo", value_name = "DIR")]
    demo_target: Option<String>,
    /// Mark the session cookie Secure; set this when users reach the server over HTTPS.
    #[arg(long)]
    cookie_secure: bool,
    /// Sign-in attempts per account in a burst; then one per 60/N s, and after 10*N in a
    /// row one per 600/N s.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    sign_in_account_limit: u32,
    /// Sign-in attempts per client address in a burst, with the same growing waits.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    sign_in_address_limit: u32,
    /// Password hashes computed at once (default: two per core); sign-ins beyond get 503.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    password_hash_slots: Option<u32>,
    /// A reverse proxy whose X-Forwarded-For names the client (repeat for several). Behind
    /// a TLS proxy every client has the proxy's address unless it is named here.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// The URL users reach the server at, e.g. https://graftbench.example.com behind a TLS
    /// proxy (default: http:// and the --listen address). Requests for another Host, and
    /// form posts from another Origin, are refused.
    #[arg(long)]
    public_url: Option<String>,
    /// Open connections at most; further ones are closed when accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Open connections from one peer address at most (behind a proxy, the proxy is the
    /// peer: raise it up to --max-connections there).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,
    /// Minutes between signed checkpoints of the audit trail (when it has grown); 0: only
    /// on demand. Needs the checkpoint key in the data directory: on SQLite it is made at
    /// the first start, on PostgreSQL run `graftbench audit key` where checkpoints are to
    /// be signed (replicas without it do not sign).
    #[arg(long, default_value_t = 60)]
    checkpoint_minutes: u32,
    #[command(flatten)]
    workers: super::worker::WorkerArgs,
}

/// The origins a server without `--public-url` answers as: the address it listens on
/// (and `localhost` for a loopback one). Listening on every address needs the URL users
/// type: there is no address to derive it from.
fn derived_origins(bound: SocketAddr) -> Result<Vec<web::PublicOrigin>> {
    if bound.ip().is_unspecified() {
        bail!(
            "listening on {bound} (every address) needs --public-url: the URL users type, \
             e.g. --public-url https://graftbench.example.com"
        );
    }
    let mut hosts = vec![bound.to_string()];
    if bound.ip().is_loopback() {
        hosts.push(format!("localhost:{}", bound.port()));
    }
    Ok(hosts
        .into_iter()
        .map(|host| web::PublicOrigin {
            scheme: "http".to_owned(),
            host,
        })
        .collect())
}

pub async fn run(global: &Global, args: ServeArgs) -> Result<()> {
    // A broken policy file stops the server before it touches the database.
    let policy = LoadedPolicy::load(&global.data_dir)?;
    let db = global.open_database().await?;
    if args.demo {
        if !args.listen.ip().is_loopback() {
            bail!(
                "--demo seeds accounts with published passwords: listen on a loopback address only"
            );
        }
        graftbench::service::demo::seed(&db).await?;
    } else {
        // Loopback alone proves nothing (a TLS proxy in front connects over loopback):
        // accounts with published passwords are served only by an explicit --demo.
        let published = graftbench::service::demo::accounts_with_published_passwords(&db).await?;
        if !published.is_empty() {
            let list = published.join(", ");
            bail!(
                "this data directory has demo accounts whose passwords are published ({list}). \
                 Serve it with --demo (loopback only), or first give each a new password with \
                 `graftbench user passwd NAME` or disable it with `graftbench user disable NAME`"
            );
        }
    }
    // Revisions stored before their files were recorded (an older database): recorded
    // in the background, so the dashboard's search finds their paths; the server does not
    // wait for it.
    {
        let db = db.clone();
        tokio::spawn(async move {
            match graftbench::service::reviewers::record_unrecorded_revisions(&db).await {
                Ok(0) => {}
                Ok(recorded) => tracing::info!(recorded, "recorded the files of older revisions"),
                Err(e) => {
                    tracing::warn!(error = %e, "recording the files of older revisions failed")
                }
            }
        });
    }
    if db.kind() == store::DbKind::Postgres && db.can_rewrite_audit_events().await? {
        tracing::warn!(
            "this database role may edit and delete audit events: run serve as a role made \
             with `graftbench migrate --grant-runtime-role` (see the README)"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let bound = listener.local_addr()?;
    let public_origins = match &args.public_url {
        Some(url) => vec![web::PublicOrigin::parse(url).map_err(anyhow::Error::msg)?],
        None => derived_origins(bound)?,
    };
    let defaults = web::SignInLimits::default();
    let config = ServerConfig {
        site_root: args.site_root,
        cookie_secure: args.cookie_secure,
        policy,
        sign_in: web::SignInLimits {
            per_account_per_minute: args.sign_in_account_limit,
            per_address_per_minute: args.sign_in_address_limit,
            hashing_concurrency: args
                .password_hash_slots
                .map_or(defaults.hashing_concurrency, |n| n as usize),
            trusted_proxies: args.trusted_proxies,
        },
        serve: web::ServeOptions {
            max_connections: args.max_connections as usize,
            max_connections_per_address: args.max_connections_per_address as usize,
            ..web::ServeOptions::default()
        },
        public_origins,
        data_dir: global.data_dir.clone(),
        target_root: args.workers.target_root.clone(),
        no_target_notice: None,
    };
    let mut config = config;
    if args.demo {
        use graftbench::service::demo::{register_kernel, DemoKernel};
        let kernel = match &args.demo_target {
            Some(dir) => DemoKernel::Build { dir: dir.clone() },
            None => DemoKernel::Debian,
        };
        let settings = graftbench::service::targets::TargetSettings::new(
            &global.data_dir,
            args.workers.target_root.clone(),
        );
        match register_kernel(&db, &settings, &kernel).await {
            Ok(Some(queued)) => println!(
                "Registering the demo's kernel target in the background (job {}): its \
                 page under Targets shows the progress; the demo fixes are analysed then.",
                queued.job
            ),
            Ok(None) => {}
            Err(why) => {
                // The demo still runs: its pages say why the graphs are missing.
                eprintln!("warning: the demo has no kernel target: {why}");
                config.no_target_notice =
                    Some(settings.redact(&format!("the demo's kernel target: {why}")));
            }
        }
    }
    if db.kind() == store::DbKind::Sqlite {
        // One machine, one signer: its key is made with its data directory.
        graftbench::service::checkpoints::load_or_create_key(&global.data_dir)?;
    }
    if args.checkpoint_minutes > 0 {
        spawn_checkpoint_signer(
            db.clone(),
            global.data_dir.clone(),
            std::time::Duration::from_secs(60 * u64::from(args.checkpoint_minutes)),
        )?;
    }
    spawn_archiver(
        db.clone(),
        global.data_dir.clone(),
        config.policy.policy.audit.clone(),
    )
    .await?;
    let (stop_workers, stop) = tokio::sync::watch::channel(false);
    let workers = super::worker::start(
        global,
        &db,
        &args.workers,
        std::sync::Arc::new(config.policy.policy.clone()),
        stop,
    )
    .await?;
    let router = web::router(&config, db).await?;
    let url = format!(
        "{}/",
        config
            .public_origins
            .first()
            .map_or_else(|| format!("http://{bound}"), web::PublicOrigin::origin)
    );
    println!("Graftbench is running at {url}");
    if args.demo {
        println!("\nDemo logins (user / password / role):");
        for (name, _, password, roles) in graftbench::service::demo::DEMO_USERS {
            let roles: Vec<&str> = roles.iter().map(|r| r.label()).collect();
            println!("  {name:<6} {password:<15} {}", roles.join(", "));
        }
        println!();
    }
    web::serve(listener, router, config.serve, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serving HTTP")?;
    // A job in hand is left to its lease: another worker takes it up.
    let _ = stop_workers.send(true);
    for worker in workers {
        worker.abort();
    }
    Ok(())
}

/// Signs a checkpoint of the trail every `every` while it grows. Several replicas with the
/// same key sign the same checkpoints (Ed25519 signatures are deterministic) and the
/// database keeps one of each; a replica without the key does not sign.
fn spawn_checkpoint_signer(
    db: store::Database,
    data_dir: PathBuf,
    every: std::time::Duration,
) -> Result<()> {
    use graftbench::service::checkpoints;
    if checkpoints::load_key(&data_dir)?.is_none() {
        tracing::warn!(
            key = %data_dir.join(checkpoints::KEY_FILE).display(),
            "no audit checkpoint key: this server signs no checkpoints"
        );
        return Ok(());
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let newest = match db.checkpoints(1).await {
                Ok(list) => list.first().map_or(0, |c| c.size),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the newest checkpoint failed");
                    continue;
                }
            };
            match db.audit_head_seq().await {
                Ok(head) if head > newest => {}
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the audit head failed");
                    continue;
                }
            }
            match graftbench::service::tree::sign_checkpoint(&db, &data_dir).await {
                Ok(made) => tracing::info!(size = made.size, "audit checkpoint signed"),
                Err(e) => tracing::error!(error = %e, "signing an audit checkpoint failed"),
            }
        }
    });
    Ok(())
}

/// Moves events older than the policy's online months into archive segments at the start
/// and then daily, where this server's database role may delete audit events (SQLite,
/// or PostgreSQL as the owner, which serve warns about); otherwise `graftbench audit
/// archive` run as the owner does it.
async fn spawn_archiver(
    db: store::Database,
    data_dir: PathBuf,
    retention: graftbench_domain::eligibility::AuditRetention,
) -> Result<()> {
    use graftbench::service::{checkpoints, retention};
    if !db.can_rewrite_audit_events().await? {
        tracing::info!(
            "this database role may not move audit events into archive segments: run \
             `graftbench audit archive` as the database's owner (daily, e.g. from cron)"
        );
        return Ok(());
    }
    if checkpoints::load_key(&data_dir)?.is_none() {
        tracing::warn!("no audit checkpoint key: events are not archived");
        return Ok(());
    }
    let source = format!("graftbench serve ({})", data_dir.display());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(24 * 60 * 60));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match retention::archive(&db, &data_dir, &retention, &source).await {
                Ok(Some(done)) => tracing::info!(
                    first = done.segment.first_seq,
                    last = done.segment.last_seq,
                    file = %done.path.display(),
                    "audit events archived"
                ),
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "archiving audit events failed"),
            }
        }
    });
    Ok(())
}
