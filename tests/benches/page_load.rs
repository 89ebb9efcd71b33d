//! How fast the dashboard and a patch page load in a real browser (headless Chromium),
//! and what they transfer: `cargo xtask site && cargo bench -p graftbench-tests --bench
//! page_load`.
//!
//! Two servers on the same machine in the same run: `plain` serves the site as builds
//! before fingerprinting did (plain file names, compressed per request), `fingerprinted`
//! as `cargo xtask site` builds it now (hashed names, precompressed brotli and gzip,
//! cached for good). Each sample clears the browser's cache and loads the page (cold),
//! then loads it again (warm). Times are from the navigation's start: first contentful
//! paint, and hydrated (the moment `data-hydrated` appears on `<html>`).

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::network::ClearBrowserCacheParams;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::Page;
use futures::StreamExt;
use graftbench_app::model::Role;
use graftbench_tests::{fixture, Backend, TestServer, PASSWORD};
use std::path::{Path, PathBuf};
use std::time::Duration;

const SAMPLES: usize = 15;

/// Records when hydration finishes, before any of the page's own scripts run.
const HYDRATION_PROBE: &str = "new MutationObserver((_, observer) => {
    if (document.documentElement.dataset.hydrated === 'true') {
        window.__hydrated = performance.now();
        observer.disconnect();
    }
}).observe(document, { attributes: true, subtree: true, attributeFilter: ['data-hydrated'] });";

/// What one load measured, as the page reports it.
const MEASURE: &str = "JSON.stringify({
    fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || -1,
    hydrated: window.__hydrated || -1,
    wasm: performance.getEntriesByType('resource').filter(r => r.name.endsWith('.wasm'))
        .reduce((n, r) => n + r.transferSize, 0),
    css: performance.getEntriesByType('resource').filter(r => r.name.endsWith('.css'))
        .reduce((n, r) => n + r.transferSize, 0),
    js: performance.getEntriesByType('resource').filter(r => r.name.endsWith('.js'))
        .reduce((n, r) => n + r.transferSize, 0),
})";

#[derive(Debug, Default, Clone, Copy)]
struct Load {
    fcp: f64,
    hydrated: f64,
    wasm: f64,
    css: f64,
    js: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A copy of the built site without its list of fingerprinted files: served as before.
fn plain_site(built: &Path, into: &Path) -> PathBuf {
    let site = into.join("site");
    for dir in ["pkg", "style"] {
        let to = site.join(dir);
        std::fs::create_dir_all(&to).expect("site copy");
        for entry in std::fs::read_dir(built.join(dir)).expect("built site") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            // Only the plain names: no hashed copies, no precompressed files.
            let hashed = |p: &str| p.len() == 16 && p.bytes().all(|b| b.is_ascii_hexdigit());
            if !name.split('.').any(hashed) {
                std::fs::copy(&path, to.join(name)).expect("copy");
            }
        }
    }
    site
}

async fn wait_hydrated(page: &Page) {
    for _ in 0..300 {
        let done = page
            .evaluate("window.__hydrated > 0 && document.readyState === 'complete'")
            .await
            .ok()
            .and_then(|v| v.into_value::<bool>().ok())
            .unwrap_or(false);
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state: String = page
        .evaluate("JSON.stringify([location.href, document.documentElement.dataset.hydrated, window.__hydrated, document.readyState])")
        .await
        .ok()
        .and_then(|v| v.into_value().ok())
        .unwrap_or_default();
    panic!("the page did not hydrate in 6 s: {state}");
}

async fn load(page: &Page, url: &str) -> Load {
    page.goto(url).await.expect("navigate");
    wait_hydrated(page).await;
    let json: String = page
        .evaluate(MEASURE)
        .await
        .expect("measure")
        .into_value()
        .expect("a string");
    let v: serde_json::Value = serde_json::from_str(&json).expect("measurements");
    let f = |key: &str| v[key].as_f64().unwrap_or(-1.0);
    Load {
        fcp: f("fcp"),
        hydrated: f("hydrated"),
        wasm: f("wasm"),
        css: f("css"),
        js: f("js"),
    }
}

async fn measure(browser: &Browser, server: &TestServer, path: &str) -> (Vec<Load>, Vec<Load>) {
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await
        .expect("context");
    let mut target = CreateTargetParams::new("about:blank");
    target.browser_context_id = Some(context);
    let page = browser.new_page(target).await.expect("page");
    page.evaluate_on_new_document(HYDRATION_PROBE)
        .await
        .expect("probe");
    // Sign in through the form, as a person does.
    page.goto(server.url("/login")).await.expect("login page");
    page.find_element("input[name=username]")
        .await
        .expect("form")
        .click()
        .await
        .expect("click")
        .type_str("bob")
        .await
        .expect("type");
    page.find_element("input[name=password]")
        .await
        .expect("form")
        .click()
        .await
        .expect("click")
        .type_str(PASSWORD)
        .await
        .expect("type");
    page.find_element("button[type=submit]")
        .await
        .expect("button")
        .click()
        .await
        .expect("submit");
    wait_hydrated(&page).await;
    let url = server.url(path);
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        page.execute(ClearBrowserCacheParams::default())
            .await
            .expect("clear cache");
        cold.push(load(&page, &url).await);
        warm.push(load(&page, &url).await);
    }
    page.close().await.ok();
    (cold, warm)
}

async fn server_for(site: PathBuf) -> TestServer {
    let server =
        TestServer::start_configured(Backend::Sqlite, move |config| config.site_root = site).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let diff = String::from_utf8(fixture("format-patch-multi.patch")).expect("utf-8");
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "diff": diff, "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H" }),
    )
    .await;
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
    server
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let built = graftbench_tests::site_root();
    assert!(
        built.join("assets.json").is_file(),
        "build the site first: cargo xtask site"
    );
    let scratch = tempfile::tempdir().expect("scratch");
    let profile = tempfile::tempdir().expect("profile");
    let (mut browser, mut handler) = Browser::launch(
        BrowserConfig::builder()
            .chrome_executable("/usr/bin/chromium")
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1440, 900)
            .args([
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
            ])
            .build()
            .expect("browser config"),
    )
    .await
    .expect("chromium (cargo xtask setup --tests installs it)");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    println!(
        "| site | page | wasm | css | js | first paint | hydrated | warm: transferred | warm: hydrated |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, site) in [
        ("plain", plain_site(&built, scratch.path())),
        ("fingerprinted", built.clone()),
    ] {
        let server = server_for(site).await;
        for (label, path) in [("dashboard", "/"), ("patch", "/patches/1")] {
            let (cold, warm) = measure(&browser, &server, path).await;
            let pick = |loads: &[Load], f: fn(&Load) -> f64| median(loads.iter().map(f).collect());
            println!(
                "| {name} | {label} | {:.0} KB | {:.1} KB | {:.1} KB | {:.0} ms | {:.0} ms | {:.1} KB | {:.0} ms |",
                pick(&cold, |l| l.wasm) / 1000.0,
                pick(&cold, |l| l.css) / 1000.0,
                pick(&cold, |l| l.js) / 1000.0,
                pick(&cold, |l| l.fcp),
                pick(&cold, |l| l.hydrated),
                pick(&warm, |l| l.wasm + l.css + l.js) / 1000.0,
                pick(&warm, |l| l.hydrated),
            );
        }
        server.stop().await;
    }
    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
}
