//! `graftbench`: parses the command line and hands each command to its module in `cli/`.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: a patch page view makes and frees many short
/// strings and a few large buffers across threads, and under load glibc's allocator took
/// a sixth of the server's time (with page faults from returning large blocks to the
/// system on every request). See the README's "First view and load".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
use cli::{audit, global::Global, kernel, migrate, module, policy, serve, target, user, worker};

/// Review, approve, build and ship Linux live patches.
#[derive(Parser)]
#[command(name = "graftbench", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the web server (with workers for background jobs, unless --workers 0).
    Serve(serve::ServeArgs),
    /// Runs workers for background jobs (kernel targets, analyses) without a web server,
    /// against the database serve uses.
    Worker(worker::WorkerCommandArgs),
    /// Applies database migrations (and creates the session table) and exits. Run it as
    /// the database's owner; on PostgreSQL, --grant-runtime-role gives the role `serve`
    /// runs as rows to read and write, but audit events only to read and append.
    Migrate(migrate::MigrateArgs),
    /// Manages user accounts.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Shows which functions a live patch for FIX must replace in a kernel build, and why.
    Analyze(kernel::AnalyzeArgs),
    /// Builds the index of a kernel build (vmlinux and its modules) that makes `analyze`
    /// fast; does nothing when the index is up to date.
    Index(kernel::IndexArgs),
    /// Shows where the compiler put functions: their out-of-line code and clones, the
    /// functions they were inlined into, and their callers.
    Where(kernel::WhereArgs),
    /// Livepatch modules: signing keys, signatures, inspection.
    #[command(subcommand)]
    Module(module::ModuleCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The review policy (DATA_DIR/policy.toml).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Kernel targets: the builds fixes are analysed for.
    #[command(subcommand)]
    Target(target::TargetCommand),
}

fn main() -> ExitCode {
    return_large_blocks_to_the_system();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_sessions=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Each password check takes a 19 MiB argon2 block. glibc serves the first from mmap and
/// gives it back, but then raises its mmap threshold above 19 MiB, so later blocks come
/// from per-thread arenas and stay in the process after they are freed: the bench saw a
/// server with four hashing slots keep 481 MiB after fifteen rounds of 64 sign-ins.
/// Pinning the threshold at 4 MiB keeps such blocks mmapped, so memory falls back after a
/// burst (98 MiB peak, 22 MiB after, in the same bench).
fn return_large_blocks_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any other
    // thread exists, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 * 1024 * 1024);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match cli.command {
        Command::Analyze(args) => kernel::analyze(global, &args),
        Command::Index(args) => kernel::index(global, &args),
        Command::Where(args) => kernel::where_(global, &args),
        Command::Module(command) => module::run(command),
        Command::Audit(command) => audit::run(global, command).await,
        Command::Migrate(args) => migrate::run(global, args).await,
        Command::User(command) => user::run(global, command).await,
        Command::Policy(command) => policy::run(global, command),
        Command::Serve(args) => serve::run(global, args).await,
        Command::Worker(args) => worker::run(global, args).await,
        Command::Target(command) => target::run(global, command).await,
    }
}
