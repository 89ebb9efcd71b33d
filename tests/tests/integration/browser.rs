//! A real browser (headless Chromium) against a real server: sign in, submit a fix through
//! the form, read it side by side, switch to the unified view in the page.
//!
//! Screenshots go to `docs/screenshots/`, which the README shows.

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use futures::StreamExt;
use graftbench_app::model::Role;
use graftbench_tests::{fixture, json_of, repo_root, Backend, TestServer, PASSWORD};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";

async fn launch() -> (Browser, tokio::task::JoinHandle<()>, tempfile::TempDir) {
    let profile = tempfile::tempdir().expect("profile directory");
    let config = BrowserConfig::builder()
        .chrome_executable(CHROMIUM)
        .no_sandbox()
        .user_data_dir(profile.path())
        .viewport(Viewport {
            width: 1500,
            height: 1000,
            device_scale_factor: Some(1.0),
            ..Viewport::default()
        })
        .window_size(1500, 1000)
        // Keep Chromium off the network: these machines have none, and it would retry.
        .args([
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .build()
        .expect("browser config");
    let (browser, mut handler) = Browser::launch(config).await.unwrap_or_else(|e| {
        panic!("cannot start {CHROMIUM} (`cargo xtask setup --browser` installs it): {e}")
    });
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    (browser, events, profile)
}

/// What a page logged as an error while a test drove it: `console.error` (a WebAssembly
/// panic arrives there), uncaught exceptions, and the browser's own error entries (a
/// failed load, a Content-Security-Policy violation). Every browser test ends by asking
/// that there were none.
struct Console {
    problems: Arc<Mutex<Vec<String>>>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Console {
    /// Starts listening on `page`, which has not loaded anything yet.
    async fn watch(page: &Page) -> Console {
        use chromiumoxide::cdp::browser_protocol::log::{
            EnableParams as LogEnable, EventEntryAdded, LogEntryLevel, LogEntrySource,
        };
        use chromiumoxide::cdp::js_protocol::runtime::{
            ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
        };
        page.execute(LogEnable::default())
            .await
            .expect("Log.enable");
        let problems = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let problems = problems.clone();
            move |text: String| problems.lock().expect("console lock").push(text)
        };
        let mut calls = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut entries = page.event_listener::<EventEntryAdded>().await.unwrap();
        let (r1, r2, r3) = (record.clone(), record.clone(), record);
        let listeners = vec![
            tokio::spawn(async move {
                while let Some(call) = calls.next().await {
                    if call.r#type == ConsoleApiCalledType::Error {
                        let text: Vec<String> = call
                            .args
                            .iter()
                            .map(|a| {
                                a.value
                                    .as_ref()
                                    .map(|v| v.to_string())
                                    .or_else(|| a.description.clone())
                                    .unwrap_or_default()
                            })
                            .collect();
                        r1(format!("console.error: {}", text.join(" ")));
                    }
                }
            }),
            tokio::spawn(async move {
                while let Some(thrown) = exceptions.next().await {
                    let details = &thrown.exception_details;
                    let description = details
                        .exception
                        .as_ref()
                        .and_then(|e| e.description.clone())
                        .unwrap_or_default();
                    r2(format!("uncaught: {} {description}", details.text));
                }
            }),
            tokio::spawn(async move {
                while let Some(entry) = entries.next().await {
                    let entry = &entry.entry;
                    if entry.level == LogEntryLevel::Error
                        || entry.text.contains("Content Security Policy")
                    {
                        let network = entry.source == LogEntrySource::Network;
                        r3(format!(
                            "{}{}: {}",
                            if network { "network " } else { "" },
                            entry.url.as_deref().unwrap_or(""),
                            entry.text
                        ));
                    }
                }
            }),
        ];
        Console {
            problems,
            listeners,
        }
    }

    /// Asserts that nothing went wrong in `who`'s page. `refused` names the paths whose
    /// 4xx answers the test caused on purpose (the browser logs each as a failed load).
    async fn assert_clean(&self, who: &str, refused: &[&str]) {
        // Let the last events arrive.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let problems: Vec<String> = self
            .problems
            .lock()
            .expect("console lock")
            .iter()
            .filter(|p| {
                !(p.starts_with("network ")
                    && p.contains("the server responded with a status of 4")
                    && refused.iter().any(|path| p.contains(&format!("{path}:"))))
            })
            .cloned()
            .collect();
        assert!(problems.is_empty(), "{who}'s console: {problems:#?}");
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        for listener in &self.listeners {
            listener.abort();
        }
    }
}

/// A new page in `browser` (in `context` when given) with its console watched, then
/// loading `url`.
async fn open_page(
    browser: &Browser,
    context: Option<chromiumoxide::cdp::browser_protocol::browser::BrowserContextId>,
    url: &str,
) -> (Page, Console) {
    let mut target = CreateTargetParams::new("about:blank");
    target.browser_context_id = context;
    let page = browser.new_page(target).await.expect("page");
    let console = Console::watch(&page).await;
    page.goto(url).await.expect("navigate");
    (page, console)
}

/// Closes the browser, stops its event loop, then the server.
async fn finish(mut browser: Browser, events: tokio::task::JoinHandle<()>, server: TestServer) {
    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
    server.stop().await;
}

async fn eval_bool(page: &Page, js: &str) -> bool {
    page.evaluate(js)
        .await
        .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
        .into_value::<bool>()
        .unwrap_or(false)
}

/// Polls a condition in the page until it holds or `limit` passes. While a navigation is
/// under way there is no document to ask; that counts as "not yet".
async fn wait_for(page: &Page, js: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        let holds = match page.evaluate(js).await {
            Ok(result) => result.into_value::<bool>().unwrap_or(false),
            Err(_) => false,
        };
        if holds {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn screenshot(page: &Page, name: &str) {
    let dir = repo_root().join("docs/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    let png = page
        .screenshot(ScreenshotParams::builder().full_page(false).build())
        .await
        .expect("screenshot");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_submit_and_read_the_diff_in_both_layouts() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    let (browser, events, _profile) = launch().await;
    let (page, console) = open_page(&browser, None, &server.url("/")).await;

    // Signed out: the app sends us to the sign-in page.
    assert!(
        wait_for(
            &page,
            "location.pathname === '/login'",
            Duration::from_secs(10)
        )
        .await,
        "redirected to sign-in"
    );
    page.find_element("input[name=username]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("alice")
        .await
        .unwrap();
    page.find_element("input[name=password]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(PASSWORD)
        .await
        .unwrap();
    page.find_element("button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "location.pathname === '/' && !!document.querySelector('.page-head h1')",
            Duration::from_secs(10)
        )
        .await,
        "signed in and on the patch list"
    );

    // Submit a real git format-patch mail through the form.
    page.goto(server.url("/patches/new")).await.unwrap();
    assert!(
        wait_for(
            &page,
            "!!document.querySelector('textarea[name=diff]')",
            Duration::from_secs(10)
        )
        .await
    );
    page.find_element("input[name=title]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("proc: cmdline: reject a missing command line")
        .await
        .unwrap();
    page.find_element("input[name=cves]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("CVE-2026-12345")
        .await
        .unwrap();
    let mail = String::from_utf8(fixture("format-patch-multi.patch")).expect("fixture is UTF-8");
    // Typing a whole diff key by key is slow and tests nothing more; paste it as a user would.
    let set = format!(
        "document.querySelector('textarea[name=diff]').value = {}; true",
        serde_json::to_string(&mail).unwrap()
    );
    assert!(eval_bool(&page, &set).await);
    page.find_element("form.submit button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "/^\\/patches\\/\\d+$/.test(location.pathname)",
            Duration::from_secs(15)
        )
        .await,
        "redirected to the new patch"
    );
    let stored = server.db.listed_patches().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].cves, ["CVE-2026-12345"]);

    // Side by side, highlighted.
    assert!(
        wait_for(
            &page,
            "!!document.querySelector('table.diff.split')",
            Duration::from_secs(10)
        )
        .await
    );
    let highlighted = "Array.from(document.querySelectorAll('table.diff.split td.code.add span.k')).some(e => e.textContent === 'if')";
    assert!(
        eval_bool(&page, highlighted).await,
        "an added `if` is highlighted as a keyword"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelectorAll('table.diff.split tr td.ln').length > 40"
        )
        .await,
        "line numbers on both sides"
    );
    assert!(
        eval_bool(&page, "document.querySelector('table.diff.split td.code.add').closest('tr').querySelectorAll('td').length === 4").await,
        "old | new columns"
    );
    // The review panel sits above the diff: show the diff itself.
    assert!(
        eval_bool(
            &page,
            "document.querySelector('.diff-toolbar').scrollIntoView(); true"
        )
        .await
    );
    screenshot(&page, "diff-side-by-side.png").await;

    // Switch layout in the page: hydrated code re-renders, nothing is reloaded.
    assert!(eval_bool(&page, "window.__graftbenchMarker = 'same page'; true").await);
    let start = Instant::now();
    let mut unified = false;
    while !unified && start.elapsed() < Duration::from_secs(20) {
        // Hydration may still be finishing on a loaded machine: click until it responds.
        page.find_element("#layout-unified")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        unified = wait_for(
            &page,
            "!!document.querySelector('table.diff.unified')",
            Duration::from_millis(500),
        )
        .await;
    }
    assert!(unified, "the unified view appeared after clicking");
    assert!(eval_bool(&page, "!document.querySelector('table.diff.split')").await);
    assert!(
        eval_bool(&page, "window.__graftbenchMarker === 'same page'").await,
        "no page load happened"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#layout-unified').getAttribute('aria-pressed') === 'true'"
        )
        .await
    );
    assert!(
        eval_bool(&page, "document.querySelector('table.diff.unified td.code.add').closest('tr').querySelectorAll('td').length === 3").await,
        "one code column"
    );
    screenshot(&page, "diff-unified.png").await;

    page.find_element("#layout-split")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "!!document.querySelector('table.diff.split')",
            Duration::from_secs(5)
        )
        .await
    );
    console.assert_clean("alice", &[]).await;

    finish(browser, events, server).await;
}

/// Opens a page in a browser context of its own (its own cookies: its own session) and
/// signs `name` in there.
async fn signed_in_page(browser: &Browser, server: &TestServer, name: &str) -> (Page, Console) {
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await
        .expect("browser context");
    let (page, console) = open_page(browser, Some(context), &server.url("/login")).await;
    sign_in_here(&page, name, PASSWORD).await;
    (page, console)
}

/// Signs `name` in on the sign-in page `page` shows, as a user types it.
async fn sign_in_here(page: &Page, name: &str, password: &str) {
    assert!(
        wait_for(
            page,
            "!!document.querySelector('input[name=username]')",
            Duration::from_secs(10)
        )
        .await
    );
    for (field, text) in [("username", name), ("password", password)] {
        page.find_element(format!("input[name={field}]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap()
            .type_str(text)
            .await
            .unwrap();
    }
    page.find_element("button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            page,
            "location.pathname === '/' && !!document.querySelector('.page-head h1')",
            Duration::from_secs(10)
        )
        .await,
        "{name} signed in"
    );
}

/// Clicks a button and waits for the page the form post leads to.
async fn click_and_wait(page: &Page, selector: &str, condition: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("{selector}: {e}"))
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(page, condition, Duration::from_secs(15)).await,
        "after clicking {selector}: {condition}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reviewers_approve_in_their_own_sessions_and_the_auditor_sees_it_all() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    server.add_user("carol", &[Role::Reviewer]).await;
    server.add_user("frank", &[Role::Auditor]).await;
    let (browser, events, _profile) = launch().await;

    // The author submits through the form: an emergency change with a high CVSS score.
    let (alice, alice_console) = signed_in_page(&browser, &server, "alice").await;
    alice.goto(server.url("/patches/new")).await.unwrap();
    assert!(
        wait_for(
            &alice,
            "!!document.querySelector('textarea[name=diff]')",
            Duration::from_secs(10)
        )
        .await
    );
    let mail = String::from_utf8(fixture("format-patch-multi.patch")).expect("fixture is UTF-8");
    let fill = format!(
        "document.querySelector('input[name=cves]').value = 'CVE-2026-4242';
         document.querySelector('input[name=cvss_vector]').value = 'CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H';
         document.querySelector('select[name=tier]').value = 'emergency';
         document.querySelector('textarea[name=diff]').value = {}; true",
        serde_json::to_string(&mail).unwrap()
    );
    assert!(eval_bool(&alice, &fill).await);
    click_and_wait(
        &alice,
        "form.submit button[type=submit]",
        "/^\\/patches\\/\\d+$/.test(location.pathname) && !!document.querySelector('#review')",
    )
    .await;
    let path = alice.evaluate("location.pathname").await.unwrap();
    let path: String = path.into_value().unwrap();
    assert!(
        eval_bool(
            &alice,
            "document.querySelector('.badge[data-state]').dataset.state === 'in_review'"
        )
        .await
    );
    // The author is offered no approval of their own patch.
    assert!(eval_bool(&alice, "!document.querySelector('#action-approve')").await);

    // Two reviewers, each in their own session, approve.
    for (name, approvals) in [("bob", 1), ("carol", 2)] {
        let (page, console) = signed_in_page(&browser, &server, name).await;
        page.goto(server.url(&path)).await.unwrap();
        assert!(
            wait_for(
                &page,
                "!!document.querySelector('#action-approve')",
                Duration::from_secs(10)
            )
            .await,
            "{name} is offered approval"
        );
        click_and_wait(
            &page,
            "#action-approve",
            &format!(
                "!!document.querySelector('#approvals') && document.querySelector('#approvals').textContent.startsWith('{approvals} of 2')"
            ),
        )
        .await;
        if name == "carol" {
            assert!(
                eval_bool(
                    &page,
                    "document.querySelector('.badge[data-state]').dataset.state === 'approved'"
                )
                .await,
                "approved after the second approval"
            );
            assert!(
                eval_bool(
                    &page,
                    "document.querySelector('#eligibility .badge').textContent.includes('eligible for live patching')
                     && document.querySelector('#eligibility .cvss').textContent.includes('7.8')"
                )
                .await,
                "the eligibility badge shows the score"
            );
            assert!(
                eval_bool(
                    &page,
                    "/^emergency due in (2d|3d|1d|\\d+h)/.test(document.querySelector('#review .clock').textContent.trim())"
                )
                .await,
                "the deadline clock runs"
            );
            screenshot(&page, "review-approved.png").await;
        }
        console.assert_clean(name, &[]).await;
        page.close().await.ok();
    }

    // The patch list shows the state and the clock.
    alice.goto(server.url("/")).await.unwrap();
    assert!(
        wait_for(
            &alice,
            "!!document.querySelector('table.listing .badge.state-approved') && !!document.querySelector('table.listing .clock')",
            Duration::from_secs(10)
        )
        .await
    );

    // The auditor reads the trail: every step, in order.
    let (frank, frank_console) = signed_in_page(&browser, &server, "frank").await;
    frank
        .goto(server.url("/audit?subject=patch:1"))
        .await
        .unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#audit-events tbody tr')",
            Duration::from_secs(10)
        )
        .await
    );
    let rows = frank
        .evaluate(
            "Array.from(document.querySelectorAll('#audit-events tbody tr')).map(r => r.querySelector('td:nth-child(3)').textContent + ' ' + r.querySelector('.action').textContent)",
        )
        .await
        .unwrap()
        .into_value::<Vec<String>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            "alice patch.submitted",
            "bob sign_off.approve",
            "carol sign_off.approve",
            "carol patch.state_changed",
        ]
    );
    assert!(eval_bool(&frank, "!!document.querySelector('#chain-ok')").await);
    // The export links carry the filters the page shows.
    assert!(
        eval_bool(
            &frank,
            "document.querySelector('#export-csv').getAttribute('href') === '/api/v1/audit/export?format=csv&subject=patch%3A1'"
        )
        .await
    );
    let exported: String = frank
        .evaluate(
            "fetch(document.querySelector('#export-jsonl').getAttribute('href')).then(r => r.text())",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    let header: serde_json::Value =
        serde_json::from_str(exported.lines().next().unwrap_or_default()).unwrap();
    assert_eq!(header["header"]["events"], 4, "{exported}");
    assert_eq!(exported.lines().count(), 5, "{exported}");
    screenshot(&frank, "audit-trail.png").await;

    // Evidence: the checkpoint key exists as `serve` makes it; the auditor signs a
    // checkpoint on the page, asks for the period's evidence, then the patch's report.
    graftbench::service::checkpoints::load_or_create_key(&server.data_dir).unwrap();
    frank
        .find_element("#sign-checkpoint")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#checkpoint-list tbody tr')",
            Duration::from_secs(10)
        )
        .await
    );
    frank.goto(server.url("/audit")).await.unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#period-evidence')",
            Duration::from_secs(10)
        )
        .await
    );
    frank
        .evaluate(
            "document.querySelector('#period-evidence input[name=from]').value = '2000-01-01'",
        )
        .await
        .unwrap();
    frank
        .find_element("#period-evidence button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#population-list')",
            Duration::from_secs(10)
        )
        .await
    );
    assert!(
        eval_bool(
            &frank,
            "document.querySelectorAll('#control-mapping tbody tr').length >= 10 && document.querySelector('#control-mapping').textContent.includes('6.5.1') && document.querySelector('#control-mapping').textContent.includes('A.8.32')"
        )
        .await
    );
    assert!(
        eval_bool(
            &frank,
            "document.querySelector('#population-list').textContent.includes('#1')"
        )
        .await
    );
    // The period's bundle downloads (a tar archive). The report may fetch nothing (its
    // policy is `default-src 'none'`): the download is fetched from an app page.
    let period_href: String = frank
        .evaluate("document.querySelector('#download-bundle').getAttribute('href')")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(
        period_href.starts_with("/api/v1/audit/evidence?from=2000-01-01"),
        "{period_href}"
    );
    frank.goto(server.url("/policy")).await.unwrap();
    let size: f64 = frank
        .evaluate(format!("fetch('{period_href}').then(r => r.ok && r.headers.get('content-type') === 'application/x-tar' ? r.arrayBuffer().then(b => b.byteLength) : 0)"))
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(size > 4096.0, "{size}");
    // The patch page links its report; the report lists the sign-offs.
    frank.goto(server.url("/patches/1")).await.unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#evidence-report')",
            Duration::from_secs(10)
        )
        .await
    );
    frank
        .find_element("#evidence-report")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &frank,
            "!!document.querySelector('#sign-offs-1')",
            Duration::from_secs(10)
        )
        .await
    );
    let sign_offs = frank
        .evaluate("Array.from(document.querySelectorAll('#sign-offs-1 tbody tr')).map(r => r.cells[1].textContent + ' ' + r.cells[2].textContent.trim())")
        .await
        .unwrap()
        .into_value::<Vec<String>>()
        .unwrap();
    assert_eq!(sign_offs, ["reviewer approve", "reviewer approve"]);
    assert!(eval_bool(&frank, "!!document.querySelector('#control-mapping')").await);
    screenshot(&frank, "evidence-report.png").await;
    assert!(
        eval_bool(&frank, "document.querySelector('#download-bundle').getAttribute('href') === '/api/v1/patches/1/evidence'").await
    );
    frank.goto(server.url("/policy")).await.unwrap();
    let bundle: f64 = frank
        .evaluate("fetch('/api/v1/patches/1/evidence').then(r => r.ok ? r.arrayBuffer().then(b => b.byteLength) : 0)")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert!(bundle > 4096.0, "{bundle}");
    let exported = server
        .db
        .audit_events()
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "audit.evidence_exported" && e.actor == "frank")
        .count();
    assert_eq!(exported, 2);
    alice_console.assert_clean("alice", &[]).await;
    frank_console.assert_clean("frank", &[]).await;

    finish(browser, events, server).await;
}

/// Security review, finding 1: a mail whose subject closes the `<title>` element ran its
/// script in every reviewer's browser that opened the patch, and approved the patch with
/// their sessions. Two reviewers open such a patch here: the title is text, the payload
/// makes no request, nothing changes, and the page's own scripts run under the
/// Content-Security-Policy without a single violation (the page hydrates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_in_a_mail_subject_does_nothing_when_reviewers_open_the_patch() {
    use chromiumoxide::cdp::browser_protocol::network::{
        EnableParams as NetworkEnable, EventRequestWillBeSent,
    };

    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("mallory", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    server.add_user("carol", &[Role::Reviewer]).await;
    let subject = "</title><script>fetch('/api/v1/patches/1/actions/approve',{method:'POST',\
                   headers:{'content-type':'application/json'},body:'{}'});\
                   document.title='pwned'</script>";
    let mail = graftbench_tests::mail_with_subject(subject);
    let mallory = server.signed_in("mallory").await;
    let response = mallory
        .post(server.url("/api/v1/patches"))
        .json(&serde_json::json!({ "title": "", "diff": mail }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let events_before = server.db.audit_events().await.unwrap().len();

    let (browser, events, _profile) = launch().await;
    for name in ["bob", "carol"] {
        let (page, console) = signed_in_page(&browser, &server, name).await;
        page.execute(NetworkEnable::default()).await.unwrap();
        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .unwrap();
        page.goto(server.url("/patches/1")).await.unwrap();
        // Hydrated (the components attached, which marks <html>): that needs the nonce'd
        // loader, the bundle it imports, and the WebAssembly it compiles. Clicking before
        // would hit a button with no handler yet: on a loaded machine, a flaky test.
        assert!(
            wait_for(
                &page,
                "!!document.querySelector('#layout-unified') && document.documentElement.dataset.hydrated === 'true'",
                Duration::from_secs(30)
            )
            .await,
            "{name}'s page hydrated under the policy"
        );
        // And the layout switch works in the page, without a page load.
        page.find_element("#layout-unified")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(
            wait_for(
                &page,
                "!!document.querySelector('table.diff.unified')",
                Duration::from_secs(15)
            )
            .await,
            "{name}'s hydrated page switched layout in the page"
        );
        let title: String = page
            .evaluate("document.title")
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert!(title.starts_with("</title><script>"), "{title}");
        assert!(title.ends_with(" · Graftbench"), "{title}");
        // What the browser logged and asked for while the page loaded and hydrated.
        console.assert_clean(name, &[]).await;
        let mut urls = Vec::new();
        while let Ok(Some(request)) =
            tokio::time::timeout(Duration::from_millis(200), requests.next()).await
        {
            urls.push(request.request.url.clone());
        }
        assert!(!urls.is_empty(), "requests were observed");
        assert!(
            urls.iter().all(|u| !u.contains("/actions/")),
            "{name}'s browser sent: {urls:?}"
        );
    }
    // Nothing changed: no sign-off, no state change, no event at all.
    let patch: serde_json::Value = mallory
        .get(server.url("/api/v1/patches/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patch["review"]["state"], "in_review", "{patch}");
    assert_eq!(patch["review"]["approvals"], 0, "{patch}");
    let after = server.db.audit_events().await.unwrap();
    let new: Vec<&str> = after[events_before..]
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| !a.starts_with("session."))
        .collect();
    assert!(new.is_empty(), "{new:?}");

    finish(browser, events, server).await;
}

/// A refused form post comes back as the submission page with the reason and what was
/// typed. The page the browser gets hydrates like any other (no hydration panic, nothing
/// in the console) and stays interactive: a link is followed by the router in the page.
/// Refused for a bad CVSS vector (422). A user who may not submit (the server answers
/// 403) is not shown the form at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_submission_comes_back_as_a_working_page() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("rita", &[Role::ReleaseManager]).await;
    let (browser, events, _profile) = launch().await;
    {
        let (page, console) = signed_in_page(&browser, &server, "rita").await;
        page.goto(server.url("/patches/new")).await.unwrap();
        assert!(
            wait_for(
                &page,
                "!!document.querySelector('#not-an-author') && document.documentElement.dataset.hydrated === 'true'",
                Duration::from_secs(10)
            )
            .await,
            "a release manager is told who submits"
        );
        assert!(
            eval_bool(
                &page,
                "!document.querySelector('form.submit') && !document.querySelector('nav a[href=\"/patches/new\"]')"
            )
            .await,
            "no form and no link for a release manager"
        );
        console.assert_clean("rita", &[]).await;
        page.close().await.ok();
    }
    for (name, vector, reason) in [("alice", "CVSS:3.1/AV:Q", "CVSS")] {
        let (page, console) = signed_in_page(&browser, &server, name).await;
        page.goto(server.url("/patches/new")).await.unwrap();
        assert!(
            wait_for(
                &page,
                "!!document.querySelector('textarea[name=diff]') && document.documentElement.dataset.hydrated === 'true'",
                Duration::from_secs(10)
            )
            .await
        );
        let fill = format!(
            "document.querySelector('input[name=title]').value = 'Refused <here>';
             document.querySelector('input[name=cvss_vector]').value = {};
             document.querySelector('textarea[name=diff]').value = {}; true",
            serde_json::to_string(vector).unwrap(),
            serde_json::to_string(graftbench_tests::ONE_LINE_FIX).unwrap()
        );
        assert!(eval_bool(&page, &fill).await);
        click_and_wait(
            &page,
            "form.submit button[type=submit]",
            "!!document.querySelector('#submit-error') && document.documentElement.dataset.hydrated === 'true'",
        )
        .await;
        let shown: String = page
            .evaluate("document.querySelector('#submit-error').textContent")
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert!(shown.contains(reason), "{name}: {shown}");
        assert!(
            eval_bool(
                &page,
                "document.querySelector('input[name=title]').value === 'Refused <here>'"
            )
            .await,
            "{name}: what was typed is kept"
        );
        // Interactive: the router in the page follows a link without loading a page.
        assert!(eval_bool(&page, "window.__no_reload = true; true").await);
        page.find_element("nav a[href='/policy']")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        assert!(
            wait_for(
                &page,
                "location.pathname === '/policy' && window.__no_reload === true",
                Duration::from_secs(10)
            )
            .await,
            "{name}: the refused page is hydrated and routes in the page"
        );
        console
            .assert_clean(name, &["/patches/new", "/patches"])
            .await;
        page.close().await.ok();
    }
    finish(browser, events, server).await;
}

/// The first analysis of patch `patch`'s newest revision, once there is one (2 min).
/// Submits `diff` as `client`, to be analysed against `target`: the patch's id.
async fn submit_for(
    client: &reqwest::Client,
    server: &TestServer,
    title: &str,
    diff: &str,
    target: &str,
) -> i64 {
    let response = client
        .post(server.url("/api/v1/patches"))
        .json(&serde_json::json!({ "title": title, "diff": diff, "targets": [target] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

async fn first_analysis(
    client: &reqwest::Client,
    server: &TestServer,
    patch: i64,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let body: serde_json::Value = client
            .get(server.url(&format!("/api/v1/patches/{patch}/analyses")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(first) = body["revisions"][0]["analyses"].get(0) {
            return first.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The real Debian 6.1.0-56 kernel (the lighter cloud-amd64 build) as a target, through
/// the web: registered with its headers and source (downloaded once into
/// `$GRAFTBENCH_KERNEL_CACHE`, which `cargo xtask test` keeps outside the clone), its
/// page's counts what its index holds, its index rebuilt with the progress following
/// live in the page (no reload), and the `fs/proc/cmdline.c` fix analysed against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debian_build_is_a_target_whose_index_job_shows_live_and_whose_analysis_is_right() {
    const RELEASE: &str = "6.1.0-56-cloud-amd64";
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("rita", &[Role::ReleaseManager]).await;
    server.add_user("alice", &[Role::Author]).await;
    let _workers = server.start_workers(1).await;
    let manager = server.signed_in("rita").await;
    let response = manager
        .post(server.url("/api/v1/targets"))
        .json(&serde_json::json!({ "release": RELEASE, "with_source": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job = response.json::<serde_json::Value>().await.unwrap()["job"]
        .as_i64()
        .unwrap();
    // The first run downloads about 420 MB; later runs link the cache.
    let start = Instant::now();
    let registered = loop {
        let job = server.db.job(job).await.unwrap().unwrap();
        if !matches!(
            job.state,
            graftbench::store::jobs::JobState::Queued | graftbench::store::jobs::JobState::Running
        ) {
            break job;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "registration: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        registered.state,
        graftbench::store::jobs::JobState::Done,
        "{registered:?}"
    );
    let target = server.db.targets().await.unwrap().remove(0);
    assert_eq!(target.kernel_release, RELEASE);
    assert_eq!(target.package_version, "6.1.192-2");
    assert!(target.compiler.starts_with("GNU C"), "{}", target.compiler);
    assert!(target
        .source_dir
        .as_deref()
        .is_some_and(|d| std::path::Path::new(d).join("fs/proc/cmdline.c").is_file()));
    assert!(target
        .kbuild_dir
        .as_deref()
        .is_some_and(|d| std::path::Path::new(d).join("Makefile").is_file()));

    // The page's counts are the index's.
    let index = analyzer::cache::read(
        std::path::Path::new(&target.index_path),
        analyzer::cache::Objects::All,
    )
    .expect("the target's index");
    let functions: usize = index
        .objects
        .iter()
        .map(|o| o.functions.iter().filter(|f| f.defined).count())
        .sum();
    let inline_sites: usize = index.objects.iter().map(|o| o.inline_sites.len()).sum();
    let clones: usize = index
        .objects
        .iter()
        .map(|o| o.symbols.functions.iter().filter(|s| s.is_clone()).count())
        .sum();
    drop(index);
    let (mut browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "rita").await;
    page.goto(server.url(&format!("/targets/{RELEASE}")))
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "document.documentElement.dataset.hydrated === 'true'",
            Duration::from_secs(10)
        )
        .await
    );
    let fact = |name: &str| format!("document.querySelector('[data-fact={name}]').textContent");
    for (name, expected) in [
        ("functions", functions),
        ("inline_sites", inline_sites),
        ("clones", clones),
    ] {
        let shown: String = page
            .evaluate(fact(name))
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert_eq!(shown, expected.to_string(), "{name}");
    }

    // Rebuilding the index: the job's progress moves in the page without a reload.
    click_and_wait(
        &page,
        "form[action$='/reindex'] button",
        "document.documentElement.dataset.hydrated === 'true' \
         && document.querySelectorAll('.job').length === 2",
    )
    .await;
    page.evaluate("window.graftbenchNotReloaded = true")
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let start = Instant::now();
    loop {
        let (state, value): (String, f64) = page
            .evaluate(
                "(() => { const j = document.querySelector('.job'); \
                 return [j.dataset.state, j.querySelector('progress').value]; })()",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        if state == "running" && value > 0.0 && value < 100.0 {
            if seen.is_empty() {
                screenshot(&page, "target.png").await;
            }
            seen.insert(value as i64);
        }
        if state == "done" {
            break;
        }
        assert!(state != "failed", "the index job failed");
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the index job: {state} {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !seen.is_empty(),
        "the page showed the job running part-way (it saw only the end)"
    );
    assert!(
        eval_bool(&page, "window.graftbenchNotReloaded === true").await,
        "the page followed the job without reloading"
    );
    console.assert_clean("rita", &[]).await;

    // The cmdline fix, written against this build's own source.
    let author = server.signed_in("alice").await;
    let fix = std::fs::read_to_string(repo_root().join("bench/fixes/cmdline.patch")).unwrap();
    let patch = submit_for(&author, &server, "cmdline: say so", &fix, RELEASE).await;
    let analysis = first_analysis(&author, &server, patch).await;
    let replaced: Vec<&str> = analysis["report"]["replace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(replaced, ["cmdline_proc_show"], "{analysis}");

    // A fix to a line the build's configuration leaves out (fault injection, not set in
    // cloud-amd64's .config, from its headers package): no code of this build changes,
    // said with the directive that decides it, not "not analysable".
    let fix = concat!(
        "--- a/kernel/fork.c\n",
        "+++ b/kernel/fork.c\n",
        "@@ -1055,4 +1055,4 @@\n",
        " \n",
        " #ifdef CONFIG_FAULT_INJECTION\n",
        "-\ttsk->fail_nth = 0;\n",
        "+\ttsk->fail_nth = 1;\n",
        " #endif\n",
    );
    let patch = submit_for(&author, &server, "fail_nth", fix, RELEASE).await;
    let analysis = first_analysis(&author, &server, patch).await;
    assert_eq!(analysis["outcome"], "no_code", "{analysis}");
    // At its own line; fuzz 1, as patch(1) gives a hunk with less context after its
    // change than before (at fuzz 0 it would have to end the file).
    assert_eq!(
        analysis["report"]["hunks"][0]["outcome"]["placed"]["fuzz"],
        1
    );
    assert_eq!(
        analysis["summary"],
        "no code of this build changes: 1 changed line(s) are not compiled in its \
         configuration (`#ifdef CONFIG_FAULT_INJECTION` (line 1056) with \
         CONFIG_FAULT_INJECTION not set)",
        "{analysis}"
    );
    assert_eq!(analysis["report"]["not_compiled"][0]["at"]["line"], 1057);
    assert_eq!(analysis["report"]["not_analysable"], serde_json::json!([]));

    // A fix written against another tree (kpatch's shadow-newpid, for linux 6.2): on
    // this build's own source every hunk is placed, at the offsets patch(1) finds, and
    // the functions are the ones the fix changes here.
    let fix =
        std::fs::read_to_string(repo_root().join("analyzer/tests/data/kpatch/shadow-newpid.patch"))
            .unwrap();
    let patch = submit_for(&author, &server, "shadow newpid", &fix, RELEASE).await;
    let analysis = first_analysis(&author, &server, patch).await;
    assert_eq!(analysis["outcome"], "analysed", "{analysis}");
    assert_eq!(analysis["report"]["basis"], "target-source");
    let mut replaced: Vec<&str> = analysis["report"]["replace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    replaced.sort_unstable();
    assert_eq!(
        replaced,
        ["do_exit", "kernel_clone", "proc_pid_status"],
        "{analysis}"
    );
    let offsets: Vec<(String, i64)> = analysis["report"]["hunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let placed = &h["outcome"]["placed"];
            (
                h["path"].as_str().unwrap().to_owned(),
                placed["offset"].as_i64().unwrap_or(i64::MIN),
            )
        })
        .collect();
    let expected = [
        ("fs/proc/array.c", 0),
        ("kernel/exit.c", 9),
        ("kernel/exit.c", 23),
        ("kernel/fork.c", 97),
        ("kernel/fork.c", 97),
        ("kernel/fork.c", 97),
    ];
    assert_eq!(
        offsets,
        expected.map(|(p, o)| (p.to_owned(), o)).to_vec(),
        "{analysis}"
    );
    // Without the source, the same fix on the same build is said not to match it,
    // rather than analysed at the wrong lines (which named copy_process, idle_dummy and
    // fork_idle before).
    let fix_file = repo_root().join("analyzer/tests/data/kpatch/shadow-newpid.patch");
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(graftbench_tests::graftbench_binary())
        .arg("--data-dir")
        .arg(data.path())
        .args(["analyze", "--index", &target.index_path])
        .arg(&fix_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("DOES NOT MATCH THIS BUILD").count(),
        4,
        "{text}"
    );
    for wrong in [
        "idle_dummy",
        "fork_idle",
        "copy_process",
        "synchronize_group_exit",
    ] {
        assert!(!text.contains(wrong), "{wrong}: {text}");
    }
    browser.close().await.unwrap();
    events.abort();
    server.stop().await;
}

/// The `data-k` keys of the diff cells the graph lights.
async fn lit_cells(page: &Page) -> Vec<String> {
    page.evaluate(
        "[...document.querySelectorAll('td.code.impact-lit')].map(c => c.dataset.k).sort()",
    )
    .await
    .unwrap()
    .into_value()
    .unwrap()
}

/// The labels of the graph's lit nodes.
async fn lit_nodes(page: &Page) -> Vec<String> {
    page.evaluate(
        "[...document.querySelectorAll('svg.impact-graph g.node.lit text.label')]\
         .map(t => t.textContent).sort()",
    )
    .await
    .unwrap()
    .into_value()
    .unwrap()
}

/// The impact graph beside the diff: a fix submitted against the fixture target is
/// analysed while the page is open (its progress followed to the end without a reload,
/// the graph appearing then), the graph sits to the right of the diff, hovering a
/// function lights its diff lines and path, clicking a hunk lights what it reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_impact_graph_appears_beside_the_diff_when_the_analysis_ends_and_lights_the_lines() {
    let (server, _root) = crate::targets::server_with_fixture_root(Backend::Sqlite).await;
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    let admin = server.signed_in("ada").await;
    {
        let _workers = server.start_workers(1).await;
        let job = crate::targets::register_fixture(&server, &admin).await;
        let job = crate::targets::finished_job(&admin, &server, job).await;
        assert_eq!(job["state"], "done", "{job}");
    }
    // No worker runs now: the analysis waits in the queue until the page is open.
    let author = server.signed_in("alice").await;
    let patch = submit_for(
        &author,
        &server,
        "req_len and bump",
        crate::targets::CLONE_AND_INLINE_FIX,
        "fixture",
    )
    .await;
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "alice").await;
    page.goto(server.url(&format!("/patches/{patch}")))
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "document.documentElement.dataset.hydrated === 'true' \
             && !!document.querySelector('.impact-matrix tr[data-target=fixture] .job[data-state=queued]')",
            Duration::from_secs(10)
        )
        .await,
        "the matrix shows the queued analysis"
    );
    assert!(eval_bool(&page, "!document.querySelector('svg.impact-graph')").await);
    page.evaluate("window.graftbenchNotReloaded = true")
        .await
        .unwrap();
    let _workers = server.start_workers(1).await;
    assert!(
        wait_for(
            &page,
            "!!document.querySelector('svg.impact-graph g.node')",
            Duration::from_secs(60)
        )
        .await,
        "the graph appears once the analysis is done"
    );
    assert!(
        eval_bool(&page, "window.graftbenchNotReloaded === true").await,
        "without a reload"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('.impact-matrix tr[data-target=fixture]').dataset.state === 'analysed'"
        )
        .await
    );
    // Beside the diff: to its right, level with it.
    assert!(
        eval_bool(
            &page,
            "(() => { const d = document.querySelector('.pane-diff').getBoundingClientRect(); \
             const g = document.querySelector('.pane-impact').getBoundingClientRect(); \
             return g.left >= d.right && Math.abs(g.top - d.top) < 2 && g.width > 400; })()"
        )
        .await,
        "the graph is to the right of the diff"
    );

    // Hovering a function lights the lines its code came from, and its path.
    page.find_element("svg.impact-graph g.node[aria-label^='use_req()']")
        .await
        .expect("use_req's node")
        .hover()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "document.querySelectorAll('td.code.impact-lit').length > 0",
            Duration::from_secs(5)
        )
        .await,
        "hovering lights diff lines"
    );
    assert_eq!(lit_cells(&page).await, ["f0-n12", "f0-o12"]);
    assert_eq!(
        lit_nodes(&page).await,
        [
            "clones.c hunk 1",
            "req_len()",
            "req_len.isra.0()",
            "use_req()"
        ]
    );
    page.evaluate("document.querySelector('.code-and-impact').scrollIntoView()")
        .await
        .unwrap();
    screenshot(&page, "impact-graph.png").await;

    // Clicking a hunk keeps lit every function it reaches, nested chain included.
    page.find_element("svg.impact-graph g.node[aria-label^='inlines.h hunk 1']")
        .await
        .expect("the header hunk's node")
        .click()
        .await
        .unwrap();
    // Move the mouse off the graph: the click's selection stays.
    page.find_element(".page-head h1")
        .await
        .unwrap()
        .hover()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "[...document.querySelectorAll('svg.impact-graph g.node.lit text.label')]\
             .some(t => t.textContent === 'pair_a()')",
            Duration::from_secs(5)
        )
        .await
    );
    let lit = lit_nodes(&page).await;
    for function in [
        "bump()",
        "bump_pair()",
        "count_a()",
        "count_b()",
        "count_c()",
        "pair_a()",
    ] {
        assert!(lit.contains(&function.to_owned()), "{function} in {lit:?}");
    }
    assert!(!lit.contains(&"use_req()".to_owned()), "{lit:?}");
    assert_eq!(lit_cells(&page).await, ["f1-n8", "f1-o8"]);

    // The keyboard reaches the nodes: focus lights like hovering.
    page.evaluate(
        "document.querySelector(\"svg.impact-graph g.node[aria-label^='inlines.h hunk 1']\")\
         .dispatchEvent(new MouseEvent('click', {bubbles: true}))",
    )
    .await
    .unwrap();
    page.find_element("svg.impact-graph g.node[aria-label^='req_len()']")
        .await
        .unwrap()
        .focus()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            "document.activeElement.getAttribute('aria-label').startsWith('req_len()') \
             && [...document.querySelectorAll('td.code.impact-lit')].every(c => c.dataset.k.startsWith('f0-'))",
            Duration::from_secs(5)
        )
        .await
    );

    // The header change's pitfall is on its line, under it: opened, it says why it
    // matters and links to the guide's section.
    let pitfall = "tr.pitfall-row:has(details.pitfall[data-kind=header])";
    assert!(
        eval_bool(
            &page,
            &format!(
                "(() => {{ const row = document.querySelector('{pitfall}'); \
                 const line = row.previousElementSibling; \
                 return !!line.querySelector('td.code[data-k=f1-n8]'); }})()"
            )
        )
        .await,
        "the header pitfall sits under inlines.h's new line 8"
    );
    page.find_element(format!("{pitfall} summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            &format!(
                "document.querySelector('{pitfall} details').open \
                 && document.querySelector('{pitfall} a[href$=\"#header-file-changes\"]') !== null"
            ),
            Duration::from_secs(5)
        )
        .await
    );
    // The review panel lists it, linking to its line.
    assert!(
        eval_bool(
            &page,
            "[...document.querySelectorAll('.pitfall-list a')].some(a => a.getAttribute('href') \
             === '#' + document.querySelector('tr.pitfall-row:has(details[data-kind=header])').id)"
        )
        .await
    );
    screenshot(&page, "pitfall-on-its-line.png").await;

    // Narrow: the diff and the graph are two tabs (radio buttons), the diff first.
    page.execute(
        chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams::new(
            800, 900, 1.0, false,
        ),
    )
    .await
    .unwrap();
    let shown = |pane: &str| {
        format!("getComputedStyle(document.querySelector('.pane-{pane}')).display !== 'none'")
    };
    assert!(
        wait_for(
            &page,
            &format!("{} && !({})", shown("diff"), shown("impact")),
            Duration::from_secs(5)
        )
        .await,
        "at 800 px the diff shows and the graph is a tab"
    );
    page.find_element("label[for=pane-impact]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            &format!("{} && !({})", shown("impact"), shown("diff")),
            Duration::from_secs(5)
        )
        .await,
        "the Impact tab shows the graph instead"
    );
    console.assert_clean("alice", &[]).await;
    finish(browser, events, server).await;
}

/// The README's picture of the real demo: `graftbench serve --demo` as a user starts it,
/// registering Debian's newest 6.1 cloud build (from the download cache when it has it),
/// until the constprop demo fix has its graph. Run by hand (it downloads about 420 MB
/// the first time): `cargo nextest run -p graftbench-tests --run-ignored only
/// the_real_demo`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "downloads a Debian kernel; run by hand for the README's screenshot"]
async fn the_real_demo_shows_the_graph_of_a_debian_fix() {
    let data = tempfile::tempdir().unwrap();
    let (mut child, url) = crate::targets::start_demo(data.path(), None);
    let alice = crate::targets::demo_client(&url, "alice", "alice-demo-pw").await;
    let patch = crate::targets::demo_patch(&alice, &url, "ip_rcv_finish_core").await;
    let start = Instant::now();
    loop {
        let view = crate::targets::demo_impact(&alice, &url, patch).await;
        if !view["graph"].is_null() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(1800), "{view}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (mut browser, events, _profile) = launch().await;
    let context = browser
        .create_browser_context(CreateBrowserContextParams::default())
        .await
        .unwrap();
    let (page, _console) = open_page(&browser, Some(context), &format!("{url}/login")).await;
    sign_in_here(&page, "alice", "alice-demo-pw").await;
    page.goto(format!("{url}/patches/{patch}")).await.unwrap();
    assert!(
        wait_for(
            &page,
            "document.documentElement.dataset.hydrated === 'true' \
             && !!document.querySelector('svg.impact-graph g.node')",
            Duration::from_secs(30)
        )
        .await
    );
    page.evaluate("document.querySelector('.code-and-impact').scrollIntoView()")
        .await
        .unwrap();
    page.find_element("svg.impact-graph g.node.changed")
        .await
        .unwrap()
        .hover()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    screenshot(&page, "demo-graph.png").await;
    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
    child.kill().ok();
    child.wait().ok();
}

/// Revision `n` (1, 2 or 3) of the three-revision fix the page-by-page test reviews:
/// each a `git format-patch` mail with its own commit id, `index` line and diffstat.
/// r2 adds a line to the message; r3 returns another error and names the hunk's section.
fn three_revisions(n: usize) -> String {
    let (sha, index, errno, section) = match n {
        1 => (
            "1111111111111111111111111111111111111111",
            "aaaa111..bbbb111",
            "EINVAL",
            "",
        ),
        2 => (
            "2222222222222222222222222222222222222222",
            "aaaa222..bbbb222",
            "EINVAL",
            "",
        ),
        _ => (
            "3333333333333333333333333333333333333333",
            "aaaa333..bbbb333",
            "ENOENT",
            " #include \"internal.h\"",
        ),
    };
    let cc = if n == 1 {
        ""
    } else {
        "\nCc: stable@vger.kernel.org"
    };
    format!(
        "From {sha} Mon Sep 17 00:00:00 2001\n\
         From: Alice Author <alice@example.org>\n\
         Date: Mon, {n} Jan 2024 00:00:00 +0000\n\
         Subject: [PATCH v{n}] proc: cmdline: refuse a missing command line\n\
         \n\
         Reading /proc/cmdline before the command line is saved dereferences NULL.{cc}\n\
         ---\n \
         fs/proc/cmdline.c | 2 ++\n \
         1 file changed, 2 insertions(+)\n\
         \n\
         diff --git a/fs/proc/cmdline.c b/fs/proc/cmdline.c\n\
         index {index} 100644\n\
         --- a/fs/proc/cmdline.c\n\
         +++ b/fs/proc/cmdline.c\n\
         @@ -7,6 +7,8 @@{section}\n \
         \n \
         static int cmdline_proc_show(struct seq_file *m, void *v)\n \
         {{\n\
         +\tif (!saved_command_line)\n\
         +\t\treturn -{errno};\n \
         \tseq_puts(m, saved_command_line);\n \
         \tseq_putc(m, '\\n');\n \
         \treturn 0;\n\
         -- \n\
         2.39.0\n"
    )
}

/// The links and forms a page shows, as the page's script sees them.
const CONTROLS_JS: &str = "JSON.stringify({
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))
        .filter(h => h.startsWith('/')),
    forms: [...document.querySelectorAll('form')].map(f => ({
        action: f.getAttribute('action') || '',
        method: (f.getAttribute('method') || 'get').toLowerCase(),
        buttons: [...f.querySelectorAll('button[name=action]')].map(b => b.value),
    })),
})";

/// axe-core's serious and critical findings on the page as it is now. The script is
/// evaluated through the DevTools protocol, which the page's Content-Security-Policy does
/// not govern: the policy the page is served with stays as it is.
async fn axe_findings(page: &Page, axe: &str) -> Vec<String> {
    page.evaluate_expression(axe).await.expect("axe-core loads");
    let found: String = page
        .evaluate_expression(
            "axe.run(document, { resultTypes: ['violations'] }).then(r => JSON.stringify(
                r.violations
                    .filter(v => v.impact === 'serious' || v.impact === 'critical')
                    .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.slice(0, 4)
                        .map(n => n.target.join(' ') + ' ' + (n.failureSummary || '')
                            .replace(/\\s+/g, ' ')).join(' | '))))",
        )
        .await
        .expect("axe runs")
        .into_value()
        .expect("axe's findings as JSON");
    serde_json::from_str(&found).expect("a list of findings")
}

/// Sets the page's viewport width and colour scheme, as a phone or a desktop would.
async fn emulate(page: &Page, width: i64, dark: bool) {
    use chromiumoxide::cdp::browser_protocol::emulation::{
        MediaFeature, SetDeviceMetricsOverrideParams, SetEmulatedMediaParams,
    };
    let height = if width < 600 { 844 } else { 900 };
    page.execute(SetDeviceMetricsOverrideParams::new(
        width,
        height,
        1.0,
        width < 600,
    ))
    .await
    .expect("viewport");
    let media = SetEmulatedMediaParams {
        features: Some(vec![MediaFeature::new(
            "prefers-color-scheme",
            if dark { "dark" } else { "light" },
        )]),
        ..Default::default()
    };
    page.execute(media).await.expect("colour scheme");
}

/// Goes to `path` and waits until the page is hydrated and done loading.
async fn visit(page: &Page, server: &TestServer, path: &str) {
    page.goto(server.url(path)).await.expect("navigate");
    assert!(
        wait_for(
            page,
            "document.documentElement.dataset.hydrated === 'true' && !document.querySelector('.loading')",
            Duration::from_secs(15)
        )
        .await,
        "{path} hydrated"
    );
}

/// Every page, as every role, on a phone: no control the role could not use (each link
/// leads somewhere the role may go, each form posts what the server would take from it),
/// nothing wider than 390 px, no serious or critical axe-core finding, nothing in the
/// console. The reviewer also reads the pages at 1440 px and in the dark theme, and the
/// interdiff of r1 and r3 shows the one changed code line and the message apart, not the
/// mails' headers, diffstats or `index` lines. Screenshots for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_for_every_role_shows_only_its_controls_fits_a_phone_and_passes_axe() {
    let server = TestServer::start(Backend::Sqlite).await;
    let cast: [(&str, Role); 6] = [
        ("alice", Role::Author),
        ("bob", Role::Reviewer),
        ("sam", Role::SecurityOfficer),
        ("rita", Role::ReleaseManager),
        ("frank", Role::Auditor),
        ("grace", Role::Admin),
    ];
    for (name, role) in cast {
        server.add_user(name, &[role]).await;
    }
    let alice = server.signed_in("alice").await;
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({
            "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "cves": "CVE-2026-0001",
            "diff": three_revisions(1),
        }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    for n in [2, 3] {
        let response = alice
            .post(server.url(&format!("/api/v1/patches/{id}/revisions")))
            .json(&serde_json::json!({ "diff": three_revisions(n) }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "r{n}");
    }
    // Bob approves r3 and opens a thread: he has a sign-off to withdraw, none to repeat.
    let bob = server.signed_in("bob").await;
    let detail = json_of(bob.get(server.url(&format!("/api/v1/patches/{id}")))).await;
    let sha = detail["review"]["current_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = bob
        .post(server.url(&format!("/api/v1/patches/{id}/actions/approve")))
        .json(&serde_json::json!({ "revision_sha256": sha }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = bob
        .post(server.url(&format!("/api/v1/patches/{id}/comments")))
        .json(&serde_json::json!({
            "path": "fs/proc/cmdline.c", "side": "new", "line": 11, "revision": 3,
            "body": "Why ENOENT rather than EINVAL?",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let bobs_thread = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("thread id");
    // And keeps two drafts, a thread and a reply: his pages show them with their forms.
    for draft in [
        serde_json::json!({
            "path": "fs/proc/cmdline.c", "side": "new", "line": 10, "revision": 3,
            "body": "Draft: is the check needed at all?", "draft": true,
        }),
        serde_json::json!({ "thread": bobs_thread, "body": "Draft reply", "draft": true }),
    ] {
        let response = bob
            .post(server.url(&format!("/api/v1/patches/{id}/comments")))
            .json(&draft)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    let axe = graftbench_tests::axe_script();
    let pages = [
        "/".to_owned(),
        "/patches/new".to_owned(),
        format!("/patches/{id}"),
        format!("/patches/{id}?rev=1"),
        format!("/patches/{id}/interdiff?from=1&to=3"),
        "/audit".to_owned(),
        "/policy".to_owned(),
        "/targets".to_owned(),
        "/admin".to_owned(),
    ];
    let (browser, events, _profile) = launch().await;
    let mut findings = Vec::new();
    for (name, role) in cast {
        let client = server.signed_in(name).await;
        let detail = json_of(client.get(server.url(&format!("/api/v1/patches/{id}")))).await;
        let offered: Vec<String> = detail["review"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        let offers = |action: &str| offered.iter().any(|a| a == action);
        let reads_audit = matches!(role, Role::Auditor | Role::SecurityOfficer | Role::Admin);
        // Pages the role may not open answer 403, which the browser logs as a failed load.
        let mut refused = Vec::new();
        if !reads_audit {
            refused.push("/audit");
        }
        if role != Role::Admin {
            refused.push("/admin");
        }
        let (page, console) = signed_in_page(&browser, &server, name).await;
        emulate(&page, 390, false).await;
        for path in &pages {
            visit(&page, &server, path).await;
            let wide: i64 = page
                .evaluate("document.documentElement.scrollWidth")
                .await
                .unwrap()
                .into_value()
                .unwrap();
            if wide > 390 {
                // Name the elements that stick out, innermost first.
                let culprits: String = page
                    .evaluate(
                        "[...document.querySelectorAll('body *')]
                            .filter(e => e.getBoundingClientRect().right > 391
                                && ![...e.children].some(c => c.getBoundingClientRect().right > 391))
                            .slice(0, 6)
                            .map(e => {
                                const chain = [];
                                for (let a = e; a && a !== document.body; a = a.parentElement) {
                                    chain.push(a.tagName + (a.id ? '#' + a.id : '') + '.' + a.className + ':' + Math.round(a.getBoundingClientRect().width));
                                }
                                return chain.join(' < ');
                            })
                            .join(' || ')",
                    )
                    .await
                    .unwrap()
                    .into_value()
                    .unwrap();
                panic!("{name} {path}: the page is {wide} px wide at 390: {culprits}");
            }
            let controls: serde_json::Value = serde_json::from_str(
                &page
                    .evaluate(CONTROLS_JS)
                    .await
                    .unwrap()
                    .into_value::<String>()
                    .unwrap(),
            )
            .unwrap();
            for link in controls["links"].as_array().unwrap() {
                let link = link.as_str().unwrap();
                let target = link.split('#').next().unwrap_or(link);
                if target.is_empty() {
                    continue;
                }
                // A link to a form the role may not send is a control it cannot use.
                if target == "/patches/new" {
                    assert_eq!(role, Role::Author, "{name} {path}: a link to submit a fix");
                }
                let status = client
                    .get(server.url(target))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(
                    ![401, 403].contains(&status.as_u16()),
                    "{name} {path}: the link to {link} answers {status}"
                );
            }
            for form in controls["forms"].as_array().unwrap() {
                let action = form["action"].as_str().unwrap();
                if form["method"] == "get" {
                    continue;
                }
                let patch = format!("/patches/{id}/");
                let allowed = if action == "/logout" {
                    true
                } else if action == "/patches/new" || action == "/patches" {
                    role == Role::Author
                } else if action == format!("{patch}actions") {
                    let buttons = form["buttons"].as_array().unwrap();
                    !buttons.is_empty() && buttons.iter().all(|b| offers(b.as_str().unwrap()))
                } else if action == format!("{patch}revisions") {
                    offers("upload_revision")
                } else if action.starts_with(&format!("{patch}comments"))
                    || action == format!("{patch}drafts/publish")
                {
                    offers("comment")
                } else if action.starts_with(&format!("{patch}drafts/")) {
                    // Discarding a draft: only bob keeps drafts here.
                    name == "bob"
                } else if action == format!("{patch}reviewers") {
                    // Alice wrote the patch; release managers ask for anyone's.
                    matches!(role, Role::Author | Role::ReleaseManager)
                } else if action == format!("{patch}reviewed") {
                    // A reading aid, each reader's own, on the current revision only.
                    !path.contains("rev=1")
                } else if action == "/audit/checkpoints" {
                    reads_audit
                } else if action.starts_with("/targets") {
                    matches!(role, Role::Admin | Role::ReleaseManager)
                } else if action.starts_with("/admin/") {
                    role == Role::Admin
                } else {
                    panic!("{name} {path}: a form posting to {action} is in no rule of this test: add it")
                };
                assert!(
                    allowed,
                    "{name} {path}: a form to {action} {form} shown to a {role:?}"
                );
            }
            if *path == format!("/patches/{id}") {
                // Drafts are their author's alone, on his page under their lines.
                let drafts_shown = eval_bool(
                    &page,
                    "!!document.querySelector('#drafts') && !!document.querySelector('tr.thread-row .thread.draft')
                     && !!document.querySelector('.thread .comment.draft')",
                )
                .await;
                assert_eq!(drafts_shown, name == "bob", "{name}: drafts on the page");
            }
            for finding in axe_findings(&page, &axe).await {
                findings.push(format!("{name} {path} (390 px): {finding}"));
            }
        }
        if role == Role::Reviewer {
            // The interdiff of r1 and r3: one code line and the message, nothing else.
            let path = format!("/patches/{id}/interdiff?from=1&to=3");
            visit(&page, &server, &path).await;
            let changed: Vec<String> = serde_json::from_str(
                &page
                    .evaluate(
                        "JSON.stringify([...document.querySelectorAll('#interdiff td.code.del, #interdiff td.code.add')]
                            .map(td => (td.classList.contains('del') ? '-' : '+') + td.textContent.trim()))",
                    )
                    .await
                    .unwrap()
                    .into_value::<String>()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(changed, ["-return -EINVAL;", "+return -ENOENT;"], "r1 → r3");
            let message: String = page
                .evaluate("document.querySelector('#interdiff-message').textContent")
                .await
                .unwrap()
                .into_value()
                .unwrap();
            assert!(message.contains("Cc: stable@vger.kernel.org"), "{message}");
            assert!(
                !message.contains("index") && !message.contains("1111111"),
                "{message}"
            );
            // The pages at 1440 px and in the dark theme, and the README's pictures.
            for (width, dark) in [(390, true), (1440, false), (1440, true)] {
                emulate(&page, width, dark).await;
                for path in &pages {
                    visit(&page, &server, path).await;
                    let theme = if dark { "dark" } else { "light" };
                    if *path == format!("/patches/{id}") {
                        screenshot(&page, &format!("patch-{width}-{theme}.png")).await;
                        // Code first: on a 1440x900 screen the diff starts on the first
                        // screen, below a compact review header.
                        if width == 1440 {
                            let top: f64 = page
                                .evaluate("document.querySelector('table.diff td.code').getBoundingClientRect().top")
                                .await
                                .unwrap()
                                .into_value()
                                .unwrap();
                            assert!(top < 700.0, "the first code line is at y={top}");
                        }
                    }
                    for finding in axe_findings(&page, &axe).await {
                        findings.push(format!("{name} {path} ({width} px, {theme}): {finding}"));
                    }
                }
            }
            emulate(&page, 390, false).await;
            visit(&page, &server, &format!("/patches/{id}")).await;
            screenshot(&page, "patch-390-light.png").await;
        }
        console.assert_clean(name, &refused).await;
        page.close().await.ok();
    }
    assert!(findings.is_empty(), "axe-core: {findings:#?}");
    finish(browser, events, server).await;
}

/// Comments where the code is: a click on a line number opens a comment box for that
/// line (and puts the line in the URL); the thread then shows under that line, side by
/// side and unified, with the unresolved count in the review header; a line's URL
/// scrolls to the line and marks it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_on_a_line_number_comments_there_and_the_thread_shows_under_the_line() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "diff": three_revisions(1) }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let line = "fs/proc/cmdline.c:R10";
    open_comment_box(&page, line).await;
    let fields: String = page
        .evaluate(
            "['path', 'side', 'line', 'revision'].map(n =>
                document.querySelector('#composer input[name=' + n + ']').value).join(' ')
                + ' ' + location.hash",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(fields, format!("fs/proc/cmdline.c new 10 1 #{line}"));
    page.find_element("#composer textarea")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("Is saved_command_line ever NULL here?")
        .await
        .unwrap();
    click_and_wait(
        &page,
        "#composer button[type=submit]",
        "location.hash.startsWith('#thread-') && !!document.querySelector('tr.thread-row') \
         && document.documentElement.dataset.hydrated === 'true'",
    )
    .await;
    let under_its_line = format!(
        "(() => {{ const next = document.getElementById('{line}').closest('tr').nextElementSibling;
            return !!next && next.classList.contains('thread-row')
                && next.textContent.includes('ever NULL here?'); }})()"
    );
    assert!(
        eval_bool(&page, &under_its_line).await,
        "side by side: under its line"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#unresolved').textContent.trim() === '1 unresolved thread'"
        )
        .await
    );
    click_and_wait(
        &page,
        "#layout-unified",
        "!!document.querySelector('table.diff.unified')",
    )
    .await;
    assert!(
        eval_bool(&page, &under_its_line).await,
        "unified: under its line"
    );

    // A line's URL, on a short screen: the browser scrolls to it and marks it.
    emulate(&page, 1440, false).await;
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    page.execute(SetDeviceMetricsOverrideParams::new(1440, 420, 1.0, false))
        .await
        .unwrap();
    let target = "fs/proc/cmdline.c:R11";
    // From another page: a load of the line's URL, not a jump within the page.
    visit(&page, &server, "/").await;
    visit(&page, &server, &format!("/patches/{id}#{target}")).await;
    assert!(
        wait_for(
            &page,
            &format!(
                "(() => {{ const cell = document.getElementById('{target}');
                    const box = cell.getBoundingClientRect();
                    return cell.matches(':target') && box.top >= 0 && box.bottom <= innerHeight
                        && scrollY > 0; }})()"
            ),
            Duration::from_secs(5)
        )
        .await,
        "the line is scrolled to and marked"
    );

    // Threads of older revisions carry to newer ones (Gerrit's ported comments): the one
    // on R10 (`if (!saved_command_line)`) sits under that line in r2 and r3; one on R11
    // (`return -EINVAL;`) under its line in r2, which keeps it, and among the outdated
    // threads in r3, which returns another error there.
    let bob = server.signed_in("bob").await;
    let response = bob
        .post(server.url(&format!("/api/v1/patches/{id}/comments")))
        .json(&serde_json::json!({
            "path": "fs/proc/cmdline.c", "side": "new", "line": 11, "revision": 1,
            "body": "Which errno do callers expect?",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    for n in [2, 3] {
        let response = alice
            .post(server.url(&format!("/api/v1/patches/{id}/revisions")))
            .json(&serde_json::json!({ "diff": three_revisions(n) }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "r{n}");
    }
    let under = |line: &str, text: &str| {
        format!(
            "(() => {{ const next = document.getElementById('fs/proc/cmdline.c:{line}')
                .closest('tr').nextElementSibling;
                return !!next && next.classList.contains('thread-row')
                    && next.textContent.includes('{text}')
                    && next.textContent.includes('from r1'); }})()"
        )
    };
    visit(&page, &server, &format!("/patches/{id}?rev=2")).await;
    assert!(
        eval_bool(&page, &under("R10", "ever NULL here?")).await,
        "r2: R10"
    );
    assert!(
        eval_bool(&page, &under("R11", "Which errno")).await,
        "r2: R11"
    );
    visit(&page, &server, &format!("/patches/{id}")).await;
    assert!(
        eval_bool(&page, &under("R10", "ever NULL here?")).await,
        "r3: R10"
    );
    assert!(
        eval_bool(
            &page,
            "![...document.querySelectorAll('tr.thread-row')]
                .some(r => r.textContent.includes('Which errno'))
             && [...document.querySelectorAll('#review-more .thread')]
                .some(t => t.textContent.includes('Which errno'))"
        )
        .await,
        "r3: the thread on the rewritten line is listed as outdated"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#unresolved').textContent.trim() === '2 unresolved threads'"
        )
        .await
    );
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// Clicks the number of line `line` (`path:R10`) and waits for the comment box there.
async fn open_comment_box(page: &Page, line: &str) {
    assert!(
        eval_bool(
            page,
            &format!("document.getElementById('{line}').click(); true")
        )
        .await
    );
    assert!(
        wait_for(
            page,
            "!!document.querySelector('#composer textarea')",
            Duration::from_secs(5)
        )
        .await,
        "the comment box opens on {line}"
    );
}

/// Presses `key` as a keyboard does (Chromium's own key events, to whatever has focus).
async fn press(page: &Page, key: &str) {
    use chromiumoxide::cdp::browser_protocol::input::{
        DispatchKeyEventParams, DispatchKeyEventType,
    };
    for kind in [DispatchKeyEventType::KeyDown, DispatchKeyEventType::KeyUp] {
        let mut event = DispatchKeyEventParams::builder()
            .r#type(kind.clone())
            .key(key);
        if kind == DispatchKeyEventType::KeyDown && key.chars().count() == 1 {
            event = event.text(key);
        }
        page.execute(event.build().expect("key event"))
            .await
            .expect("key pressed");
    }
}

/// "Reviewed" marks, Gerrit's way: `r` (or the file's button) marks the current file,
/// the mark and the count survive a reload, and a revision that changes the file's change
/// resets its mark while the unchanged file keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_marked_reviewed_stays_so_until_a_revision_changes_it() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let two_files = |b: &str| {
        format!(
            "--- a/fs/a.c\n+++ b/fs/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n\
             --- a/mm/b.c\n+++ b/mm/b.c\n@@ -5,2 +5,3 @@\n five\n six\n+{b}\n"
        )
    };
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "title": "two files", "diff": two_files("seven") }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let count = || async {
        page.evaluate("document.querySelector('#reviewed-count').textContent.trim()")
            .await
            .unwrap()
            .into_value::<String>()
            .unwrap()
    };
    assert_eq!(count().await, "0 of 2 files reviewed");
    // The tree: each directory once, its files under it.
    assert!(
        eval_bool(
            &page,
            "[...document.querySelectorAll('.file-tree li.dir > span')].map(s => s.textContent).join() === 'fs/,mm/'"
        )
        .await
    );
    // `r` on a line of the first file.
    press(&page, "j").await;
    press(&page, "r").await;
    assert!(
        wait_for(
            &page,
            "document.documentElement.dataset.hydrated === 'true' \
             && document.querySelector('#reviewed-count')?.textContent.trim() === '1 of 2 files reviewed' \
             && document.querySelector('#file-0 .reviewed-toggle.on') !== null",
            Duration::from_secs(15)
        )
        .await,
        "r marks the focused line's file: {}",
        count().await
    );
    // The second by its button; both survive a reload.
    click_and_wait(
        &page,
        "#file-1 .reviewed-toggle",
        "document.documentElement.dataset.hydrated === 'true' \
         && document.querySelector('#reviewed-count')?.textContent.trim() === '2 of 2 files reviewed'",
    )
    .await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    assert_eq!(count().await, "2 of 2 files reviewed");
    // A revision that changes mm/b.c only.
    let response = alice
        .post(server.url(&format!("/api/v1/patches/{id}/revisions")))
        .json(&serde_json::json!({ "diff": two_files("eight") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    visit(&page, &server, &format!("/patches/{id}")).await;
    assert_eq!(count().await, "1 of 2 files reviewed");
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#file-0 .reviewed-toggle.on') !== null \
             && document.querySelector('#file-1 .reviewed-toggle').textContent.includes('Changed since reviewed') \
             && document.querySelector('.file-tree').textContent.includes('changed since reviewed')"
        )
        .await
    );
    // An older revision has no marks to set: they are on the current one's files.
    visit(&page, &server, &format!("/patches/{id}?rev=1")).await;
    assert!(eval_bool(&page, "document.querySelector('.reviewed-toggle') === null").await);
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// The keyboard, without a mouse: `j` moves the focus from line to line, `n` to the next
/// file, `c` opens the comment box on the focused line, `u` switches to unified, `?`
/// shows the list of keys; keys typed in a text field stay text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_moves_between_lines_and_files_and_comments() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let two_files = "--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n\
                     --- a/b.c\n+++ b/b.c\n@@ -5,2 +5,3 @@\n five\n six\n+seven\n";
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "title": "two files", "diff": two_files }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let focused = || async {
        page.evaluate("document.activeElement.id || document.activeElement.className")
            .await
            .unwrap()
            .into_value::<String>()
            .unwrap()
    };
    press(&page, "j").await;
    assert_eq!(focused().await, "a.c:R1");
    // Side by side, the removed and the added line share a row: one stop, the new side.
    press(&page, "j").await;
    assert_eq!(focused().await, "a.c:R2");
    press(&page, "j").await;
    assert_eq!(focused().await, "a.c:R3");
    press(&page, "k").await;
    assert_eq!(focused().await, "a.c:R2");
    press(&page, "n").await;
    assert!(
        eval_bool(&page, "document.activeElement.id === 'file-1'").await,
        "n: the next file, {}",
        focused().await
    );
    press(&page, "j").await;
    assert_eq!(focused().await, "b.c:R5");
    press(&page, "c").await;
    assert!(
        wait_for(
            &page,
            "document.querySelector('#composer input[name=path]')?.value === 'b.c' \
             && document.querySelector('#composer input[name=line]').value === '5'",
            Duration::from_secs(5)
        )
        .await,
        "c opens the comment box on the focused line"
    );
    // In the box, `u` is a letter of the comment, not a shortcut.
    page.find_element("#composer textarea")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    press(&page, "u").await;
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#composer textarea').value === 'u' \
             && !!document.querySelector('table.diff.split')"
        )
        .await
    );
    assert!(eval_bool(&page, "document.activeElement.blur(); true").await);
    press(&page, "u").await;
    assert!(
        wait_for(
            &page,
            "!!document.querySelector('table.diff.unified')",
            Duration::from_secs(5)
        )
        .await,
        "u: unified"
    );
    press(&page, "?").await;
    assert!(
        wait_for(
            &page,
            "document.querySelector('#shortcuts')?.textContent.includes('next / previous file')",
            Duration::from_secs(5)
        )
        .await,
        "?: the list of keys"
    );
    press(&page, "Escape").await;
    assert!(
        wait_for(
            &page,
            "!document.querySelector('#shortcuts')",
            Duration::from_secs(5)
        )
        .await
    );
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_stays_under_its_line_for_its_author_and_goes_out_with_the_approval() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "diff": three_revisions(1) }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let line = "fs/proc/cmdline.c:R10";
    open_comment_box(&page, line).await;
    page.find_element("#composer textarea")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str("Draft: does anything free saved_command_line?")
        .await
        .unwrap();
    click_and_wait(
        &page,
        "#composer button[name=draft]",
        "location.hash.startsWith('#draft-') && document.documentElement.dataset.hydrated === 'true'",
    )
    .await;
    let draft_under_line = format!(
        "(() => {{ const next = document.getElementById('{line}').closest('tr').nextElementSibling;
            return !!next && !!next.querySelector('.thread.draft')
                && next.textContent.includes('free saved_command_line?'); }})()"
    );
    assert!(
        eval_bool(&page, &draft_under_line).await,
        "the draft is under its line"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#drafts summary').textContent.includes('1 draft only you can see: published with your verdict')
             && !document.querySelector('#unresolved')"
        )
        .await,
        "the header counts the draft, and no thread is published yet"
    );
    // Alice, the author, does not see it.
    let html = alice
        .get(server.url(&format!("/patches/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("free saved_command_line?"));
    // The approval takes it along: a thread under the line, no draft left.
    click_and_wait(
        &page,
        "#action-approve",
        "document.documentElement.dataset.hydrated === 'true' && !document.querySelector('#drafts')",
    )
    .await;
    assert!(
        eval_bool(
            &page,
            &format!(
                "(() => {{ const next = document.getElementById('{line}').closest('tr').nextElementSibling;
                    return !!next && !next.querySelector('.draft')
                        && !!next.querySelector('.thread')
                        && next.textContent.includes('free saved_command_line?'); }})()"
            )
        )
        .await,
        "published under its line"
    );
    assert!(
        eval_bool(
            &page,
            "document.querySelector('#unresolved').textContent.trim() === '1 unresolved thread'"
        )
        .await
    );
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// A long revision: the page carries its first 1,000 lines; a click on "Show 60 more
/// lines" brings a held-back file's lines in place, in either layout, and a link to a line
/// of another held-back file loads that file and shows the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_held_back_lines_of_a_long_revision_load_in_place() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    // 40 files of one 60-line hunk: 2,400 lines.
    let diff: String = (0..40)
        .map(|file| {
            let removed: String = (0..30)
                .map(|n| format!("-\tint old_{file}_{n} = {n};\n"))
                .collect();
            let added: String = (0..30)
                .map(|n| format!("+\tint new_{file}_{n} = {n} + 1;\n"))
                .collect();
            format!("--- a/drivers/part{file}.c\n+++ b/drivers/part{file}.c\n@@ -1,30 +1,30 @@\n{removed}{added}")
        })
        .collect();
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "title": "long", "diff": diff }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let line_shown = |anchor: &str| format!("document.getElementById('{anchor}') !== null");
    assert!(eval_bool(&page, &line_shown("drivers/part15.c:R30")).await);
    assert!(!eval_bool(&page, &line_shown("drivers/part16.c:R1")).await);
    assert!(
        eval_bool(
            &page,
            "document.querySelectorAll('.held-back a').length === 24 \
             && document.querySelector('#file-16 .held-back a').textContent === 'Show 60 more lines (1 hunk)'"
        )
        .await
    );
    click_and_wait(
        &page,
        "#file-16 .held-back a",
        &format!(
            "{} && document.querySelector('#file-16 .held-back') === null",
            line_shown("drivers/part16.c:R30")
        ),
    )
    .await;
    assert!(
        page.url()
            .await
            .unwrap()
            .unwrap_or_default()
            .ends_with(&format!("/patches/{id}")),
        "loaded in place, not by following the link"
    );
    // What was loaded stays across a layout switch, and a comment can go on its lines.
    click_and_wait(
        &page,
        "#layout-unified",
        &format!(
            "document.querySelector('#file-16 table.unified') !== null && {}",
            line_shown("drivers/part16.c:R30")
        ),
    )
    .await;
    open_comment_box(&page, "drivers/part16.c:R30").await;
    // A line of another held-back file, by its link: loaded, then shown.
    page.evaluate("location.hash = 'drivers/part39.c:R12'")
        .await
        .unwrap();
    assert!(
        wait_for(
            &page,
            &format!(
                "{} && document.querySelector('#file-39 .held-back') === null",
                line_shown("drivers/part39.c:R12")
            ),
            Duration::from_secs(15)
        )
        .await,
        "a link to a held-back line loads its file"
    );
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// With a target's source tree known, each hunk offers the lines above it (and the last
/// one those below), twenty at a time, from that tree, in either layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lines_around_a_hunk_come_from_the_targets_source_tree() {
    let (server, root) = crate::targets::server_with_fixture_root(Backend::Sqlite).await;
    let into = root.path().join("src/analyzer/tests/fixtures");
    std::fs::create_dir_all(&into).unwrap();
    for entry in std::fs::read_dir(crate::targets::fixtures::fixtures()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
    }
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let admin = server.signed_in("ada").await;
    {
        let _workers = server.start_workers(1).await;
        let response = admin
            .post(server.url("/api/v1/targets"))
            .json(&serde_json::json!({
                "vmlinux": "vmlinux",
                "name": "fixture",
                "kernel_release": "6.1.0-fixture",
                "source_dir": "src",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let job = response.json::<serde_json::Value>().await.unwrap()["job"]
            .as_i64()
            .unwrap();
        let job = crate::targets::finished_job(&admin, &server, job).await;
        assert_eq!(job["state"], "done", "{job}");
    }
    let author = server.signed_in("alice").await;
    let patch = submit_for(
        &author,
        &server,
        "req_len and bump",
        crate::targets::CLONE_AND_INLINE_FIX,
        "fixture",
    )
    .await;
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{patch}")).await;
    // clones.c's hunk starts at line 11: ten lines above it, the rest of the file below.
    let above = "#file-0 tbody tr.more-context button";
    assert!(
        eval_bool(
            &page,
            &format!("document.querySelector('{above}').textContent === '↑ Show 20 more lines'")
        )
        .await
    );
    click_and_wait(
        &page,
        above,
        "document.querySelectorAll('#file-0 tr.around').length === 10 \
         && document.querySelector('#file-0 tr.around td.ln').dataset.ln === '1' \
         && document.querySelectorAll('#file-0 tr.more-context').length === 1",
    )
    .await;
    // Highlighted as the diff is, and not lines one comments on.
    assert!(
        eval_bool(
            &page,
            "[...document.querySelectorAll('#file-0 tr.around')].some(r => r.querySelector('td.code span.t')) \
             && [...document.querySelectorAll('#file-0 tr.around td.ln')].every(td => !td.id)"
        )
        .await
    );
    // Below, twenty at a time until the file ends.
    let lines_below = format!("{}", analyzer_lines("clones.c") - 13);
    for _ in 0..10 {
        if eval_bool(
            &page,
            "document.querySelector('#file-0 tr.more-context') === null",
        )
        .await
        {
            break;
        }
        let shown = page
            .evaluate("document.querySelectorAll('#file-0 tr.around').length")
            .await
            .unwrap()
            .into_value::<usize>()
            .unwrap();
        click_and_wait(
            &page,
            "#file-0 tbody tr.more-context button",
            &format!("document.querySelectorAll('#file-0 tr.around').length > {shown} || document.querySelector('#file-0 tr.more-context') === null"),
        )
        .await;
    }
    assert!(
        eval_bool(
            &page,
            &format!(
                "document.querySelector('#file-0 tr.more-context') === null \
                 && document.querySelectorAll('#file-0 tr.around').length === 10 + {lines_below}"
            )
        )
        .await,
        "the lines below reach the file's end, and no further"
    );
    // Still there in the unified layout.
    click_and_wait(
        &page,
        "#layout-unified",
        "document.querySelector('#file-0 table.unified') !== null \
         && document.querySelectorAll('#file-0 tr.around').length > 10 \
         && document.querySelector('#file-0 tr.around').children.length === 3",
    )
    .await;
    // "Expand all" on a fresh page: every gap of both files at once.
    visit(&page, &server, &format!("/patches/{patch}")).await;
    let everything = 10 + analyzer_lines("clones.c") - 13 + 6 + analyzer_lines("inlines.h") - 9;
    click_and_wait(
        &page,
        "#expand-all",
        &format!(
            "document.querySelector('tr.more-context') === null \
             && document.querySelectorAll('tr.around').length === {everything}"
        ),
    )
    .await;
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// Without a source tree, a hunk offers the lines the patch's other revisions show
/// around it, as many as they know; "Expand all" reveals them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_source_tree_the_lines_around_hunks_come_from_other_revisions() {
    let server = TestServer::start(Backend::Sqlite).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    // Revision 1 shows lines 12-18 and 26-32 of fs/x.c; revision 2 changes 19-25.
    let response = graftbench_tests::submit_json(
        &server,
        &alice,
        serde_json::json!({ "title": "moving hunks",
            "diff": crate::review::numbered_fix("abcdef0", &[(12, 18), (26, 32)]) }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .expect("patch id");
    let upload = alice
        .post(server.url(&format!("/api/v1/patches/{id}/revisions")))
        .json(&serde_json::json!({
            "diff": crate::review::numbered_fix("abcdef0", &[(19, 25)]) }))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 201);
    let (browser, events, _profile) = launch().await;
    let (page, console) = signed_in_page(&browser, &server, "bob").await;
    visit(&page, &server, &format!("/patches/{id}")).await;
    let controls = "[...document.querySelectorAll('#file-0 tr.more-context button')].map(b => b.textContent).join('|')";
    assert!(
        eval_bool(
            &page,
            &format!("{controls} === '↑ Show 7 more lines (from other revisions)|↓ Show 7 more lines (from other revisions)'")
        )
        .await
    );
    // Above: the seven lines revision 1 shows, from line 12; then no more to show there.
    click_and_wait(
        &page,
        "#file-0 tbody tr.more-context button",
        &format!(
            "document.querySelectorAll('#file-0 tr.around').length === 7 \
             && document.querySelector('#file-0 tr.around td.ln').dataset.ln === '12' \
             && document.querySelector('#file-0 tr.around td.code').textContent.includes('int l12 = 12;') \
             && document.querySelector('#file-0 tr.around').title.includes('another revision') \
             && {controls} === '↓ Show 7 more lines (from other revisions)'"
        ),
    )
    .await;
    // "Expand all" on a fresh page: both gaps.
    visit(&page, &server, &format!("/patches/{id}")).await;
    click_and_wait(
        &page,
        "#expand-all",
        "document.querySelector('tr.more-context') === null \
         && document.querySelectorAll('#file-0 tr.around').length === 14",
    )
    .await;
    console.assert_clean("bob", &[]).await;
    page.close().await.ok();
    finish(browser, events, server).await;
}

/// How many lines the analyzer's fixture `name` has.
fn analyzer_lines(name: &str) -> usize {
    std::fs::read_to_string(crate::targets::fixtures::fixtures().join(name))
        .unwrap()
        .lines()
        .count()
}
