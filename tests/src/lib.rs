//! Test support: a real Graftbench server in this process, on a real database.
//!
//! Each [`TestServer`] gets a database of its own: a SQLite file in a temporary directory,
//! or a fresh PostgreSQL database (created on the server at `GRAFTBENCH_TEST_PG`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, and dropped afterwards).

use graftbench::store::{self, Database};
use graftbench::web::{self, ServerConfig};
use graftbench_app::model::Role;
use graftbench_domain::eligibility::LoadedPolicy;
use sqlx::Connection;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// The admin URL of the PostgreSQL server tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("GRAFTBENCH_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Where the built site (browser bundle, stylesheet) is.
pub fn site_root() -> PathBuf {
    std::env::var_os("GRAFTBENCH_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/site"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// axe-core's script, which `cargo xtask setup --tests` fetches (pinned by version and
/// hash) into `target/test-tools/`, for the browser tests' accessibility checks.
pub fn axe_script() -> String {
    let dir = repo_root().join("target/test-tools");
    let found = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("axe-") && n.ends_with(".min.js"))
        })
    });
    let Some(path) = found else {
        panic!(
            "no axe-*.min.js in {}: run `cargo xtask setup --tests`",
            dir.display()
        )
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The graftbench binary the workspace build made (beside the test's `deps/`).
pub fn graftbench_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let binary = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|dir| dir.join("graftbench"))
        .expect("target directory");
    assert!(
        binary.is_file(),
        "{} is missing: build the workspace (cargo nextest run builds it)",
        binary.display()
    );
    binary
}

/// A PostgreSQL database that exists for one test.
struct PgDatabase {
    name: String,
}

impl PgDatabase {
    async fn create() -> (PgDatabase, String) {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "graftbench_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let url = match admin.rfind('/') {
            Some(slash) => format!("{}/{name}", &admin[..slash]),
            None => panic!("GRAFTBENCH_TEST_PG has no database part: {admin}"),
        };
        (PgDatabase { name }, url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block: use a thread with its own.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, sqlx::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "warning: could not drop test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// A running server with its own database.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The server's database, for setting up users and checking what was stored.
    pub db: Database,
    /// The backend in use.
    pub backend: Backend,
    /// The server's data directory (made on first use: the checkpoint key goes there).
    pub data_dir: std::path::PathBuf,
    /// The database's URL, for processes of their own (`graftbench worker`).
    pub database_url: String,
    /// The directory in-house targets may be registered from (`--target-root`), when set.
    pub target_root: Option<PathBuf>,
    server: tokio::task::JoinHandle<()>,
    // Dropped after the server: the PostgreSQL database, or the SQLite file's directory.
    _pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on a fresh database, with the default policy.
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, LoadedPolicy::default()).await
    }

    /// Starts a server on a fresh database under `policy`.
    pub async fn start_with(backend: Backend, policy: LoadedPolicy) -> TestServer {
        TestServer::start_configured(backend, |config| config.policy = policy).await
    }

    /// Starts a server on a fresh database with the test defaults changed by `configure`.
    ///
    /// The defaults raise the sign-in limits far above what a test's sign-ins from one
    /// address need; tests of the limits set their own.
    pub async fn start_configured(
        backend: Backend,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (pg, url) = match backend {
            Backend::Sqlite => (None, store::sqlite_url(&dir.path().join("graftbench.db"))),
            Backend::Postgres => {
                let (pg, url) = PgDatabase::create().await;
                (Some(pg), url)
            }
        };
        let db = Database::connect(&url).await.expect("connect and migrate");
        let database_url = url.clone();
        let mut config = ServerConfig::new(
            site_root(),
            dir.path().join("data"),
            LoadedPolicy::default(),
        );
        config.sign_in.per_account_per_minute = 10_000;
        config.sign_in.per_address_per_minute = 100_000;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        config.public_origins = vec![web::PublicOrigin {
            scheme: "http".into(),
            host: address.to_string(),
        }];
        configure(&mut config);
        let serve_options = config.serve;
        let router = web::router(&config, db.clone())
            .await
            .expect("router (is the site built? run `cargo xtask site`)");
        let base = format!("http://{address}");
        let server = tokio::spawn(async move {
            web::serve(listener, router, serve_options, std::future::pending())
                .await
                .expect("serve");
        });
        TestServer {
            base,
            db,
            backend,
            database_url,
            target_root: config.target_root.clone(),
            data_dir: config.data_dir.clone(),
            server,
            _pg: pg,
            _dir: dir,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a user with [`PASSWORD`].
    pub async fn add_user(&self, name: &str, roles: &[Role]) -> i64 {
        let hash = graftbench::service::auth::hash_password(PASSWORD).expect("hash");
        graftbench::service::accounts::create_user(
            &self.db,
            name,
            &format!("{name} (test)"),
            &hash,
            roles,
        )
        .await
        .expect("create user")
        .expect("user name is free")
    }

    /// A client without cookies that does not follow redirects.
    pub fn anonymous(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    /// A client signed in as `name`.
    pub async fn signed_in(&self, name: &str) -> reqwest::Client {
        let client = self.anonymous();
        let response = client
            .post(self.url("/login"))
            .form(&[("username", name), ("password", PASSWORD), ("next", "/")])
            .send()
            .await
            .expect("sign in");
        assert_eq!(response.status(), 303, "sign-in redirects");
        assert_eq!(
            response.headers()["location"],
            "/",
            "sign-in as {name} succeeded"
        );
        client
    }

    /// Signs `name` in and returns the `graftbench_session=...` cookie pair.
    pub async fn session_cookie(&self, name: &str) -> String {
        let response = self
            .anonymous()
            .post(self.url("/login"))
            .form(&[("username", name), ("password", PASSWORD)])
            .send()
            .await
            .expect("sign in");
        session_cookie_of(&response).expect("a session cookie")
    }

    /// Starts `count` workers in this process for the server's jobs (as `serve` does),
    /// with a short lease and retry delay; they stop when the handle is dropped.
    pub async fn start_workers(&self, count: usize) -> RunningWorkers {
        use graftbench::service::{background, targets::TargetSettings};
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let settings = std::sync::Arc::new(TargetSettings::new(
            &self.data_dir,
            self.target_root.clone(),
        ));
        let workers = background::Workers {
            count,
            lease: std::time::Duration::from_secs(3),
            name: "test".into(),
            backoff: std::time::Duration::from_millis(200),
        };
        let tasks = background::start(
            &self.db,
            settings,
            std::sync::Arc::new(graftbench_domain::eligibility::Policy::default()),
            &workers,
            stopped,
        )
        .await
        .expect("start workers");
        RunningWorkers { stop, tasks }
    }

    /// Stops the server and closes the database, then drops its storage.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.db.close().await;
    }
}

/// Workers started by [`TestServer::start_workers`]; dropping stops them.
pub struct RunningWorkers {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for RunningWorkers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The `graftbench_session=...` pair a response sets, if it sets one.
pub fn session_cookie_of(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("graftbench_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

/// The smallest fix the parser takes: one changed line.
pub const ONE_LINE_FIX: &str = "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n";

/// Sends `request` and reads its answer as JSON, whatever the status.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("a JSON answer")
}

/// `POST /api/v1/patches` with a JSON body.
pub async fn submit_json(
    server: &TestServer,
    client: &reqwest::Client,
    body: serde_json::Value,
) -> reqwest::Response {
    client
        .post(server.url("/api/v1/patches"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// A `git format-patch` mail with `subject` (the stored-XSS shape of the security review)
/// and a one-line fix.
pub fn mail_with_subject(subject: &str) -> String {
    format!(
        "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n\
         From: Mallory <mallory@example.com>\n\
         Date: Mon, 27 Nov 2026 10:00:00 +0000\n\
         Subject: [PATCH] {subject}\n\
         \n\
         A harmless-looking fix.\n\
         ---\n\
         diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c\n\
         --- a/fs/proc/cmdline.c\n\
         +++ b/fs/proc/cmdline.c\n\
         @@ -1 +1 @@\n\
         -a\n\
         +b\n"
    )
}

/// Reads a file from `analyzer/tests/data`: real `git format-patch` output.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = repo_root().join("analyzer/tests/data").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs each listed `async fn NAME(backend: Backend)` of a test file once per database, as
/// `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// What the patch page's "more lines" controls ask `POST /api/ui/context` for: lines next
/// to hunk `hunk` of `path` in revision `revision` of patch `patch`, from `target`'s
/// source tree, or from the patch's other revisions without one.
pub struct ContextAsk<'a> {
    pub patch: i64,
    pub revision: i64,
    pub path: &'a str,
    pub hunk: usize,
    pub below: bool,
    pub count: usize,
    pub target: Option<&'a str>,
}

/// `POST /api/ui/context` as `client`: the status and the answer (`null` when it is no
/// JSON).
pub async fn context_lines(
    server: &TestServer,
    client: &reqwest::Client,
    ask: ContextAsk<'_>,
) -> (u16, serde_json::Value) {
    let mut form = vec![
        ("query[id]", ask.patch.to_string()),
        ("query[revision]", ask.revision.to_string()),
        ("query[path]", ask.path.to_owned()),
        ("query[hunk]", ask.hunk.to_string()),
        ("query[below]", ask.below.to_string()),
        ("query[count]", ask.count.to_string()),
    ];
    if let Some(target) = ask.target {
        form.push(("query[target]", target.to_owned()));
    }
    let response = client
        .post(server.url("/api/ui/context"))
        .form(&form)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (
        status,
        response
            .json::<serde_json::Value>()
            .await
            .unwrap_or(serde_json::Value::Null),
    )
}

/// The lines of a [`context_lines`] answer as (old number, new number, text without the
/// highlighter's markup); none when the answer is not a list.
pub fn numbered_lines(answer: &serde_json::Value) -> Vec<(u64, u64, String)> {
    let Some(lines) = answer.as_array() else {
        return Vec::new();
    };
    lines
        .iter()
        .map(|line| {
            let html = line["h"].as_str().expect("a line's HTML");
            let mut text = String::new();
            let mut in_tag = false;
            for c in html.chars() {
                match c {
                    '<' => in_tag = true,
                    '>' => in_tag = false,
                    c if !in_tag => text.push(c),
                    _ => {}
                }
            }
            let text = text
                .replace("&gt;", ">")
                .replace("&lt;", "<")
                .replace("&amp;", "&");
            (
                line["o"].as_u64().expect("an old number"),
                line["n"].as_u64().expect("a new number"),
                text,
            )
        })
        .collect()
}

/// The SQL statements this test process's servers run, as sqlx reports each one (a
/// `sqlx::query` event at DEBUG). The recorder is installed once per process: nextest runs
/// each test in a process of its own, so what it records is that test's.
pub struct StatementLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl StatementLog {
    /// Starts recording (before the test's server starts, so its call sites see it).
    pub fn install() -> StatementLog {
        use tracing_subscriber::layer::SubscriberExt;
        static LOG: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<String>>>> =
            std::sync::OnceLock::new();
        let log = LOG.get_or_init(|| {
            let log = std::sync::Arc::default();
            let recorder = StatementRecorder(std::sync::Arc::clone(&log));
            let only_statements = tracing_subscriber::filter::Targets::new()
                .with_target("sqlx::query", tracing::Level::DEBUG);
            let subscriber = tracing_subscriber::registry().with(
                tracing_subscriber::Layer::with_filter(recorder, only_statements),
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other subscriber in the test process");
            log
        });
        StatementLog(std::sync::Arc::clone(log))
    }

    /// The statements recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct StatementRecorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StatementRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        // sqlx gives the whole statement as `db.statement`, or only `summary` when the
        // statement is that short.
        #[derive(Default)]
        struct Fields {
            summary: String,
            statement: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_owned(),
                    "db.statement" => self.statement = value.trim().to_owned(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let statement = if fields.statement.is_empty() {
            fields.summary
        } else {
            fields.statement
        };
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(statement);
    }
}
