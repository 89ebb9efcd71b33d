//! How long the diff page of a 5,000-line patch takes to produce.
//!
//! ```text
//! cargo xtask site && cargo bench -p graftbench --bench diff_page
//! ```
//!
//! Parsing the diff; parsing + highlighting + intra-line emphasis (done once per revision,
//! when it is stored); parsing + plain text (what a view shows meanwhile); porting
//! threads; and the whole signed-in `GET /patches/{id}` through the real router on a
//! SQLite file (database read, the page's first 1,000 lines, Leptos server-side rendering,
//! response body): highlighted, with every line, and a first view while highlighting runs.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use graftbench::render::DiffRenderer;
use graftbench::service::submit::{self, SubmissionInput};
use graftbench::store::{self, Database};
use graftbench::web::{self, ServerConfig};
use graftbench_app::model::Role;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;
use tower::ServiceExt;

const TARGET_LINES: usize = 5_000;

/// A kernel-style patch of `TARGET_LINES` diff lines: many C files, hunks of context,
/// removed and added lines, with enough variety to exercise highlighting and emphasis.
fn big_patch() -> String {
    let mut out = String::new();
    let mut lines = 0;
    let mut file = 0;
    while lines < TARGET_LINES {
        let path = format!("drivers/net/ethernet/vendor/part{file:03}.c");
        let _ = write!(out, "diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n");
        lines += 4;
        for hunk in 0..12 {
            let start = 40 + hunk * 60;
            let _ = writeln!(
                out,
                "@@ -{start},10 +{start},11 @@ static int vendor_rx_poll_{file}_{hunk}(struct napi_struct *napi, int budget)"
            );
            out.push_str(
                " \tstruct vendor_priv *priv = container_of(napi, struct vendor_priv, napi);\n",
            );
            out.push_str(" \tint work_done = 0; /* frames handled in this poll */\n");
            out.push_str(" \n");
            let _ = writeln!(
                out,
                "-\tif (unlikely(priv->rx_ring[{hunk}].count > budget))"
            );
            out.push_str("-\t\treturn -EINVAL;\n");
            let _ = writeln!(out, "-\tspin_lock(&priv->lock);");
            let _ = writeln!(
                out,
                "-\twork_done = vendor_clean_rx(priv, budget, \"rx{hunk}\");"
            );
            let _ = writeln!(
                out,
                "+\tif (unlikely(READ_ONCE(priv->rx_ring[{hunk}].count) >= budget))"
            );
            out.push_str("+\t\treturn -EOVERFLOW;\n");
            let _ = writeln!(out, "+\tspin_lock_bh(&priv->lock);");
            let _ = writeln!(
                out,
                "+\twork_done = vendor_clean_rx(priv, budget, \"rx{hunk}\");"
            );
            out.push_str("+\tWARN_ON_ONCE(work_done > budget);\n");
            out.push_str(" \tspin_unlock(&priv->lock);\n");
            out.push_str(" \treturn work_done;\n");
            out.push_str(" }\n");
            lines += 1 + 15;
        }
        file += 1;
    }
    out
}

fn site_root() -> PathBuf {
    std::env::var_os("GRAFTBENCH_SITE_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/site"))
}

fn bench(c: &mut Criterion) {
    let diff = big_patch();
    let line_count = diff.lines().count();
    let renderer = DiffRenderer::new();

    let mut group = c.benchmark_group(format!("diff page, {line_count}-line patch"));
    group.throughput(Throughput::Elements(line_count as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("parse", |b| {
        b.iter(|| analyzer::patch::parse(diff.as_bytes()).expect("valid"))
    });
    group.bench_function("parse + highlight + emphasis", |b| {
        b.iter(|| {
            let patch = analyzer::patch::parse(diff.as_bytes()).expect("valid");
            renderer.render(&patch)
        })
    });
    // What a view shows of a long revision while its highlighting runs.
    group.bench_function("parse + plain text", |b| {
        b.iter(|| {
            let patch = analyzer::patch::parse(diff.as_bytes()).expect("valid");
            renderer.render_plain(&patch)
        })
    });

    // Threads of an older revision placed on a newer one's lines, before the answer is
    // cached: both revisions parsed, and the files and sides the anchors name compared.
    // The newer revision rewrites one added line per hunk; 100 threads on every 50th
    // new-side line of the older one.
    let newer = diff.replace(
        "+\tWARN_ON_ONCE(work_done > budget);",
        "+\tWARN_ON(work_done > budget);",
    );
    let older = analyzer::patch::parse(diff.as_bytes()).expect("valid");
    let anchors: Vec<graftbench::interdiff::LineAnchor> = older
        .files
        .iter()
        .flat_map(|f| {
            f.hunks
                .iter()
                .flat_map(|h| &h.lines)
                .filter_map(move |l| Some((f.path().to_owned(), true, l.new_line?)))
        })
        .step_by(50)
        .take(100)
        .collect();
    group.bench_function("port 100 threads onto the next revision (2 parses)", |b| {
        b.iter(|| {
            let from = analyzer::patch::parse(diff.as_bytes()).expect("valid");
            let to = analyzer::patch::parse(newer.as_bytes()).expect("valid");
            let port = graftbench::interdiff::port_lines(
                &from,
                &to,
                &anchors,
                std::time::Instant::now() + Duration::from_secs(1),
            );
            assert!(port.len() > 50, "most threads are placed: {}", port.len());
            port
        })
    });

    // The whole request, through the real router and a real SQLite file.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let (router, cookie, id, db, author) = runtime.block_on(async {
        let db = Database::connect(&store::sqlite_url(&dir.path().join("bench.db")))
            .await
            .expect("database");
        let hash = graftbench::service::auth::hash_password("bench password 1").expect("hash");
        graftbench::service::accounts::create_user(&db, "bench", "Bench", &hash, &[Role::Author])
            .await
            .expect("user");
        let author = db
            .user_by_name("bench")
            .await
            .expect("query")
            .expect("user")
            .user;
        let valid = submit::validate(SubmissionInput {
            title: "big".into(),
            diff: diff.clone().into_bytes(),
            ..SubmissionInput::default()
        })
        .expect("valid");
        let id = submit::create_patch(&db, &author, &valid)
            .await
            .expect("stored")
            .id;
        let config = ServerConfig::new(site_root(), dir.path().to_path_buf(), Default::default());
        let router = web::router(&config, db.clone())
            .await
            .expect("router (build the site first: cargo xtask site)");
        let login = Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("username=bench&password=bench+password+1"))
            .expect("request");
        let response = router.clone().oneshot(login).await.expect("sign in");
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        (router, cookie, id, db, author)
    });
    let fetch = |path: String| {
        let request = Request::get(path)
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .expect("request");
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.expect("response");
            assert_eq!(response.status(), StatusCode::OK);
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body")
        }
    };
    let fetch_page = |id: i64| fetch(format!("/patches/{id}"));
    let get_page = || fetch_page(id);
    // Stored through the service, so its first view starts the highlighting: wait for it.
    let mut page = runtime.block_on(get_page());
    while String::from_utf8_lossy(&page).contains("shown as plain text") {
        std::thread::sleep(Duration::from_millis(20));
        page = runtime.block_on(get_page());
    }
    eprintln!(
        "diff page: {line_count} diff lines -> {} KiB of HTML",
        page.len() / 1024
    );
    // Highlighted when it was stored (as a submission through the server is), or by the
    // first view: every later view, and a first view once that is done.
    group.bench_function("GET /patches/{id}, highlighted (SQLite, SSR)", |b| {
        b.iter(|| runtime.block_on(get_page()))
    });
    group.bench_function(
        "GET /patches/{id}?lines=all, every line (SQLite, SSR)",
        |b| b.iter(|| runtime.block_on(fetch(format!("/patches/{id}?lines=all")))),
    );
    // A revision nobody has opened and whose highlighting (started when it was stored)
    // has not finished: each iteration stores a patch whose bytes differ (one more context
    // word) and times its first view, which shows plain text; then, untimed, waits for the
    // highlighting that view started, so that it does not share the cores with the next.
    let mut serial = 0_u64;
    group.bench_function(
        "GET /patches/{id}, first view while highlighting runs (plain text)",
        |b| {
            b.iter_custom(|iterations| {
                let mut timed = Duration::ZERO;
                for _ in 0..iterations {
                    serial += 1;
                    let unique = diff.replacen(
                        "work_done = 0;",
                        &format!("work_done = 0; /* {serial} */"),
                        1,
                    );
                    let id = runtime.block_on(async {
                        let valid = submit::validate(SubmissionInput {
                            title: format!("big {serial}"),
                            diff: unique.into_bytes(),
                            ..SubmissionInput::default()
                        })
                        .expect("valid");
                        submit::create_patch(&db, &author, &valid)
                            .await
                            .expect("stored")
                            .id
                    });
                    let start = std::time::Instant::now();
                    let page = runtime.block_on(fetch_page(id));
                    timed += start.elapsed();
                    assert!(
                        String::from_utf8_lossy(&page).contains("shown as plain text"),
                        "the first view does not wait for highlighting"
                    );
                    while String::from_utf8_lossy(&runtime.block_on(fetch_page(id)))
                        .contains("shown as plain text")
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                timed
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
