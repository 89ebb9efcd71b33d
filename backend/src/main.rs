//! `graftbench`: parses the command line and hands over to the library.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use graftbench::auth;
use graftbench::db::{self, Database, DisableChange, RolesChange};
use graftbench::web::{self, ServerConfig};
use graftbench_app::model::Role;
use graftbench_domain::eligibility::LoadedPolicy;
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod files;
mod kernel_index;
mod module_cli;
use kernel_index::{Freshness, KernelBuild, Objects};

/// Review, approve, build and ship Linux live patches.
#[derive(Parser)]
#[command(name = "graftbench", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Directory for the SQLite database and other state (created mode 0700).
    #[arg(
        long,
        global = true,
        env = "GRAFTBENCH_DATA_DIR",
        default_value = "graftbench-data"
    )]
    data_dir: PathBuf,
    /// Database URL; defaults to a SQLite file in the data directory.
    /// `postgres://user@host/db` uses PostgreSQL.
    #[arg(long, global = true, env = "DATABASE_URL")]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the web server.
    Serve(ServeArgs),
    /// Applies database migrations (and creates the session table) and exits. Run it as
    /// the database's owner; on PostgreSQL, --grant-runtime-role gives the role `serve`
    /// runs as rows to read and write, but audit events only to read and append.
    Migrate {
        /// The PostgreSQL role `serve` connects as (not a superuser).
        #[arg(long)]
        grant_runtime_role: Option<String>,
    },
    /// Manages user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Shows which functions a live patch for FIX must replace in a kernel build, and why.
    Analyze(AnalyzeArgs),
    /// Builds the index of a kernel build (vmlinux and its modules) that makes `analyze`
    /// fast; does nothing when the index is up to date.
    Index(IndexArgs),
    /// Shows where the compiler put functions: their out-of-line code and clones, the
    /// functions they were inlined into, and their callers.
    Where(WhereArgs),
    /// Livepatch modules: signing keys, signatures, inspection.
    #[command(subcommand)]
    Module(module_cli::ModuleCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The review policy (DATA_DIR/policy.toml).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walks the hash chain of every audit event; names the first one that was edited,
    /// deleted or moved.
    Verify,
}

#[derive(Args)]
struct WhereArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// Function names, as in the source.
    #[arg(required = true)]
    functions: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

#[derive(Args)]
struct IndexArgs {
    /// The kernel image with debug information (the -dbg package's vmlinux).
    vmlinux: PathBuf,
    /// A directory of modules with debug information (`*.ko`, searched recursively),
    /// such as the -dbg package's lib/modules/VERSION.
    #[arg(long)]
    modules: Option<PathBuf>,
    /// Where to write the index [default: DATA_DIR/indexes/BUILD_ID.gbindex].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Rebuild even when the index is up to date.
    #[arg(long)]
    force: bool,
}

/// Which kernel build to ask: its debug files, its index, or both.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("kernel").required(true).multiple(true).args(["vmlinux", "index"])))]
struct KernelArgs {
    /// The kernel image with debug information (the -dbg package's vmlinux). With
    /// --index, the index is checked against it and rebuilt when stale; without, the
    /// index in the data directory is used when there is one.
    #[arg(long)]
    vmlinux: Option<PathBuf>,
    /// A directory of modules with debug information, analysed with vmlinux.
    #[arg(long, requires = "vmlinux")]
    modules: Option<PathBuf>,
    /// An index made by `graftbench index`.
    #[arg(long)]
    index: Option<PathBuf>,
}

#[derive(Args)]
struct AnalyzeArgs {
    #[command(flatten)]
    kernel: KernelArgs,
    /// The fix: a unified diff or a git format-patch mail.
    fix: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    /// For people.
    Text,
    /// The versioned JSON form (`version` field).
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory with the built browser bundle (`pkg/`) and stylesheet (`style/`).
    #[arg(long, env = "GRAFTBENCH_SITE_ROOT", default_value = "target/site")]
    site_root: PathBuf,
    /// Seed demo users (one per role) and a demo patch; loopback addresses only.
    #[arg(long)]
    demo: bool,
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
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user. The password is read from the terminal, or from standard input
    /// with --password-stdin; never from the command line, where other users could see it.
    Add {
        /// Login name.
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<Role>,
        /// Name shown in the UI (default: the login name).
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lists users, their roles, and whether each is disabled or a demo account.
    List,
    /// Sets a new password (read as for `add`). A demo account stops being one.
    Passwd {
        /// Login name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disables an account: it cannot sign in, and its sessions end at once. The row stays
    /// (the audit trail names it). The last enabled admin cannot be disabled.
    Disable {
        /// Login name.
        name: String,
    },
    /// Enables a disabled account again.
    Enable {
        /// Login name.
        name: String,
    },
    /// Grants and revokes roles; prints the roles the user holds afterwards.
    Roles {
        /// Login name.
        name: String,
        /// Role to grant; repeat for several.
        #[arg(long, value_parser = parse_role)]
        grant: Vec<Role>,
        /// Role to revoke; repeat for several.
        #[arg(long, value_parser = parse_role)]
        revoke: Vec<Role>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Checks DATA_DIR/policy.toml and prints the policy in force, every key spelled out.
    Show,
}

fn parse_role(name: &str) -> Result<Role, String> {
    Role::parse(name).ok_or_else(|| {
        let all: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("unknown role `{name}`; roles are: {}", all.join(", "))
    })
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

async fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    match cli.command {
        // Analysis reads the kernel's files only; it needs no database.
        Command::Analyze(args) => analyze(global, &args),
        Command::Index(args) => index(global, &args),
        Command::Where(args) => where_(global, &args),
        Command::Module(command) => module_cli::run(command),
        Command::Audit(AuditCommand::Verify) => {
            let db = open_database(global).await?;
            let count = db.verify_audit().await??;
            println!("the audit trail is intact: {count} event(s)");
            let unexplained = db.unexplained_rows().await?;
            if unexplained.is_empty() {
                println!("every sign-off, revision, role and account state has its event");
                Ok(())
            } else {
                for row in &unexplained {
                    eprintln!("unexplained: {row}");
                }
                bail!(
                    "{} row(s) in the database that no audit event explains: they were \
                     written around Graftbench",
                    unexplained.len()
                )
            }
        }
        Command::Migrate { grant_runtime_role } => {
            let db = open_database(global).await?;
            graftbench::sessions::DbSessionStore::open(&db).await?;
            println!("database is up to date");
            if let Some(role) = grant_runtime_role {
                db.grant_runtime_role(&role).await?;
                println!(
                    "granted `{role}` rows to read and write; audit events only to read and append"
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Add {
            name,
            roles,
            display_name,
            password_stdin,
        }) => {
            let db = open_database(global).await?;
            add_user(&db, &name, &roles, display_name.as_deref(), password_stdin).await
        }
        Command::User(UserCommand::List) => {
            for user in open_database(global).await?.list_users().await? {
                let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                let mut marks = Vec::new();
                if user.disabled_at.is_some() {
                    marks.push("disabled");
                }
                if user.demo {
                    marks.push("demo");
                }
                // Names made before display names were checked may hold anything: a
                // terminal must not obey it.
                println!(
                    "{}\t{}\t{}{}",
                    user.username.escape_debug(),
                    user.display_name.escape_debug(),
                    roles.join(","),
                    if marks.is_empty() {
                        String::new()
                    } else {
                        format!("\t({})", marks.join(", "))
                    }
                );
            }
            Ok(())
        }
        Command::User(UserCommand::Passwd {
            name,
            password_stdin,
        }) => {
            let db = open_database(global).await?;
            let password = read_new_password(&name, password_stdin)?;
            let hash = auth::hash_password(&password)?;
            if !db.set_password("system", &name, &hash).await? {
                bail!("no user `{name}`");
            }
            println!("password of {name} changed");
            Ok(())
        }
        Command::User(UserCommand::Disable { name }) => {
            set_disabled(&open_database(global).await?, &name, true).await
        }
        Command::User(UserCommand::Enable { name }) => {
            set_disabled(&open_database(global).await?, &name, false).await
        }
        Command::User(UserCommand::Roles {
            name,
            grant,
            revoke,
        }) => {
            let db = open_database(global).await?;
            set_roles(&db, &name, &grant, &revoke).await
        }
        Command::Policy(PolicyCommand::Show) => {
            let loaded = LoadedPolicy::load(&global.data_dir)?;
            println!("# {}", loaded.source());
            print!("{}", loaded.to_toml());
            Ok(())
        }
        Command::Serve(args) => {
            // A broken policy file stops the server before it touches the database.
            let policy = LoadedPolicy::load(&global.data_dir)?;
            serve(open_database(global).await?, args, policy).await
        }
    }
}

fn default_index_path(global: &Global, build_id: &str) -> PathBuf {
    global
        .data_dir
        .join("indexes")
        .join(format!("{build_id}.gbindex"))
}

fn index(global: &Global, args: &IndexArgs) -> Result<()> {
    let build = KernelBuild::new(&args.vmlinux, args.modules.as_deref())?;
    let path = match &args.output {
        Some(path) => path.clone(),
        None => {
            create_private_dir(&global.data_dir)?;
            default_index_path(global, &build.build_id()?)
        }
    };
    let started = std::time::Instant::now();
    // Up to date is decided by build-ids, and then every table is read and checked.
    let (index, freshness) = kernel_index::load(&path, &build, args.force, Objects::All)?;
    match freshness {
        Freshness::UpToDate => println!("{} is up to date", path.display()),
        Freshness::Rebuilt(why) => {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let functions: usize = index.objects.iter().map(|o| o.functions.len()).sum();
            println!(
                "wrote {} ({why}): {} object(s), {functions} functions, {:.1} MB, {:.2} s",
                path.display(),
                index.objects.len(),
                size as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// The index of the kernel build `kernel` names (the objects `which` asks for): read,
/// checked, rebuilt when stale.
fn load_index(
    global: &Global,
    kernel: &KernelArgs,
    which: Objects<'_>,
) -> Result<analyzer::index::KernelIndex> {
    let index = match (&kernel.index, &kernel.vmlinux) {
        (Some(path), None) => kernel_index::read(path, which)?,
        (Some(path), Some(vmlinux)) => {
            let build = KernelBuild::new(vmlinux, kernel.modules.as_deref())?;
            let (index, freshness) = kernel_index::load(path, &build, false, which)?;
            if let Freshness::Rebuilt(why) = freshness {
                eprintln!("rebuilt {} ({why})", path.display());
            }
            index
        }
        (None, Some(vmlinux)) => {
            // The index `graftbench index` left in the data directory, when it matches;
            // else the debug information itself (nothing is written unasked).
            let build = KernelBuild::new(vmlinux, kernel.modules.as_deref())?;
            let cached = build
                .build_id()
                .ok()
                .map(|id| default_index_path(global, &id))
                .filter(|path| path.exists());
            let up_to_date = |path: &Path| -> Result<bool> {
                let bytes = files::map(path)?;
                match analyzer::index::KernelIndex::build_ids(&bytes) {
                    Ok(ids) => build.matches(&ids),
                    Err(_) => Ok(false),
                }
            };
            match cached {
                Some(path) if up_to_date(&path)? => kernel_index::read(&path, which)?,
                _ => build.index()?,
            }
        }
        (None, None) => bail!("give --vmlinux or --index"),
    };
    Ok(index)
}

fn where_(global: &Global, args: &WhereArgs) -> Result<()> {
    let index = load_index(global, &args.kernel, Objects::All)?;
    let mut found = Vec::new();
    for name in &args.functions {
        let placements = analyzer::placement::placements(&index, name);
        if placements.is_empty() {
            bail!("no function named `{name}` in the debug information");
        }
        found.extend(placements);
    }
    std::mem::forget(index);
    let text = match args.format {
        ReportFormat::Text => found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        ReportFormat::Json => serde_json::to_string_pretty(&found)? + "\n",
    };
    write_stdout(&text)
}

fn analyze(global: &Global, args: &AnalyzeArgs) -> Result<()> {
    let fix =
        std::fs::read(&args.fix).with_context(|| format!("reading {}", args.fix.display()))?;
    let patch = analyzer::patch::parse(&fix)
        .with_context(|| format!("{} is not a usable fix", args.fix.display()))?;
    // Only the objects whose debug information names a file the fix changes.
    let changed = analyzer::impact::changed_lines(&patch);
    let paths: Vec<&str> = changed.iter().map(|c| c.path.as_str()).collect();
    let index = load_index(global, &args.kernel, Objects::For(&paths))?;
    let report = analyzer::impact::analyze(&patch, &index)
        .with_context(|| format!("analysing {}", args.fix.display()))?;
    // Hundreds of thousands of small allocations: the process is about to exit, and
    // freeing them one by one would take longer than the analysis.
    std::mem::forget(index);
    let text = match args.format {
        ReportFormat::Text => report.to_string(),
        ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    write_stdout(&text)
}

/// Writes to standard output; a reader that went away (`| head`) ends the output quietly.
fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to standard output")?),
    }
}

async fn open_database(global: &Global) -> Result<Database> {
    let url = match &global.database_url {
        Some(url) => url.clone(),
        None => {
            create_private_dir(&global.data_dir)?;
            db::sqlite_url(&global.data_dir.join("graftbench.db"))
        }
    };
    Database::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", db::redact_url(&url)))
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    } else if dir.metadata()?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "the data directory is readable by other users; chmod 700 it");
    }
    Ok(())
}

fn validate_username(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        bail!("user name `{name}` is not allowed: use 1 to 64 letters, digits, `.`, `_` or `-`");
    }
    Ok(())
}

async fn add_user(
    db: &Database,
    name: &str,
    roles: &[Role],
    display_name: Option<&str>,
    password_stdin: bool,
) -> Result<()> {
    validate_username(name)?;
    if let Some(display) = display_name {
        if !auth::display_name_ok(display) {
            bail!(
                "the display name must be at most {} characters, without control characters",
                auth::MAX_DISPLAY_NAME_CHARS
            );
        }
    }
    let password = read_new_password(name, password_stdin)?;
    let hash = auth::hash_password(&password)?;
    match db
        .create_user(name, display_name.unwrap_or(name), &hash, roles)
        .await?
    {
        Some(_) => {
            let roles: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            println!("created user {name} ({})", roles.join(", "));
            Ok(())
        }
        None => bail!("a user named `{name}` already exists"),
    }
}

async fn set_disabled(db: &Database, name: &str, disabled: bool) -> Result<()> {
    let verb = if disabled { "disabled" } else { "enabled" };
    match db
        .set_disabled(db::Grantor::CommandLine, name, disabled)
        .await?
    {
        DisableChange::Changed => println!("{name} {verb}"),
        DisableChange::Unchanged => println!("{name} was already {verb}"),
        DisableChange::NoSuchUser => bail!("no user `{name}`"),
        DisableChange::LastAdmin => {
            bail!("`{name}` is the last enabled admin: make someone else an admin first")
        }
        // Only the web refuses demo accounts; the command line is the break-glass path.
        DisableChange::DemoAccount => bail!("`{name}` is a demo account"),
    }
    Ok(())
}

/// A new password for `name`, from the terminal (asked twice) or standard input.
fn read_new_password(name: &str, password_stdin: bool) -> Result<String> {
    let password = if password_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from standard input")?;
        input.lines().next().unwrap_or_default().to_owned()
    } else if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        bail!("no terminal to ask for a password: pass --password-stdin and pipe it in");
    };
    if password.chars().count() < auth::MIN_PASSWORD_CHARS {
        bail!(
            "the password must have at least {} characters",
            auth::MIN_PASSWORD_CHARS
        );
    }
    Ok(password)
}

async fn set_roles(db: &Database, name: &str, grant: &[Role], revoke: &[Role]) -> Result<()> {
    if grant.is_empty() && revoke.is_empty() {
        bail!("say what to change: --grant ROLE and/or --revoke ROLE");
    }
    if let Some(both) = grant.iter().find(|r| revoke.contains(r)) {
        bail!("`{both}` is both granted and revoked");
    }
    let Some(user) = db.user_by_name(name).await? else {
        bail!("no user `{name}` (see `graftbench user list`)");
    };
    let mut roles: Vec<Role> = user
        .user
        .roles
        .iter()
        .copied()
        .filter(|r| !revoke.contains(r))
        .collect();
    roles.extend_from_slice(grant);
    // The server's command line is the audited break-glass path: in force at once.
    match db.set_roles(db::Grantor::CommandLine, name, &roles).await? {
        RolesChange::Changed { after, .. } | RolesChange::Unchanged { roles: after, .. } => {
            let names: Vec<&str> = after.iter().map(|r| r.as_str()).collect();
            println!("{name}\t{}", names.join(","));
            Ok(())
        }
        RolesChange::NoSuchUser => bail!("no user `{name}`"),
        RolesChange::LastAdmin => {
            bail!("`{name}` is the last admin: make someone else an admin first")
        }
    }
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

async fn serve(db: Database, args: ServeArgs, policy: LoadedPolicy) -> Result<()> {
    if args.demo {
        if !args.listen.ip().is_loopback() {
            bail!(
                "--demo seeds accounts with published passwords: listen on a loopback address only"
            );
        }
        graftbench::demo::seed(&db).await?;
    } else {
        // Loopback alone proves nothing (a TLS proxy in front connects over loopback):
        // accounts with published passwords are served only by an explicit --demo.
        let published = graftbench::demo::accounts_with_published_passwords(&db).await?;
        if !published.is_empty() {
            let list = published.join(", ");
            bail!(
                "this data directory has demo accounts whose passwords are published ({list}). \
                 Serve it with --demo (loopback only), or first give each a new password with \
                 `graftbench user passwd NAME` or disable it with `graftbench user disable NAME`"
            );
        }
    }
    if db.kind() == db::DbKind::Postgres && db.can_rewrite_audit_events().await? {
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
    };
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
        for (name, _, password, roles) in graftbench::demo::DEMO_USERS {
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
    Ok(())
}
