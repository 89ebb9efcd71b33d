//! The security review's findings (issue 9), each pinned by a test that failed before its
//! fix: against a real server, on SQLite and on PostgreSQL.

use graftbench::render::DiffRenderer;
use graftbench::service::pages::DbWorkbench;
use graftbench_app::model::Role;
use graftbench_tests::{
    mail_with_subject, on_both_databases, submit_json as submit, Backend, TestServer, ONE_LINE_FIX,
    PASSWORD,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

on_both_databases!(
    a_title_that_closes_the_title_element_stays_text,
    pages_carry_a_nonce_policy_and_everything_else_a_closed_one,
    a_huge_cve_list_is_refused_with_nothing_stored,
    a_file_with_no_hunks_and_no_change_is_refused,
    sign_in_is_limited_per_account_and_audited_as_a_lockout,
    sign_in_is_limited_per_address_across_accounts,
    password_hashing_runs_in_bounded_slots,
    concurrent_views_of_a_new_revision_share_one_render,
    an_altered_diff_is_never_served,
    a_refusal_message_comes_from_the_session_not_the_url,
    a_half_sent_request_is_closed_and_connections_are_capped,
    an_account_without_roles_reads_nothing,
    a_disabled_account_is_signed_out_at_once_and_cannot_sign_in,
    bad_server_function_arguments_are_a_400,
    an_admin_cannot_make_the_reviewers_that_approve_the_admins_patch,
    without_four_eyes_grants_are_in_force_at_once,
    the_host_and_the_origin_scheme_must_be_this_servers,
    signed_in_answers_are_never_stored_and_https_is_strict,
    sign_offs_and_revisions_written_around_the_server_are_named,
    enabling_an_account_again_is_granting_its_roles_again,
    an_admin_cannot_approve_through_an_author_account_the_admin_made,
    account_fixes_from_the_second_review,
    host_checks_from_the_second_review,
);

/// The mail of the stored-XSS finding: a subject that ends the `<title>` element.
const XSS_SUBJECT: &str =
    "</title><script>fetch('/api/v1/patches/1/actions/approve',{method:'POST'})</script>";

fn xss_mail() -> String {
    mail_with_subject(XSS_SUBJECT)
}

/// Finding 1: leptos_meta wrote the title into the page unescaped.
async fn a_title_that_closes_the_title_element_stays_text(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("mallory", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let mallory = server.signed_in("mallory").await;
    let response = submit(
        &server,
        &mallory,
        json!({ "title": "", "diff": xss_mail() }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let bob = server.signed_in("bob").await;
    let page = bob.get(server.url("/patches/1")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let head = &html[..html.find("</head>").expect("a head")];
    let title_start = head.find("<title>").expect("a title") + "<title>".len();
    let title_end = title_start + head[title_start..].find("</title>").expect("closed");
    assert_eq!(
        &head[title_start..title_end],
        "&lt;/title&gt;&lt;script&gt;fetch(&#39;/api/v1/patches/1/actions/approve&#39;,\
         {method:&#39;POST&#39;})&lt;/script&gt; · Graftbench"
    );
    assert!(
        !html.contains("<script>fetch"),
        "the payload is never markup"
    );
    server.stop().await;
}

/// Finding 1, defence in depth: a Content-Security-Policy with a per-response nonce that
/// every script of the page carries.
async fn pages_carry_a_nonce_policy_and_everything_else_a_closed_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let nonces: Vec<String> = futures::future::join_all((0..2).map(|_| async {
        let page = alice.get(server.url("/")).send().await.unwrap();
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        let html = page.text().await.unwrap();
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("a nonce in the policy")
            .to_owned();
        for directive in [
            "script-src 'nonce-",
            "'wasm-unsafe-eval'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(directive), "{directive} in {policy}");
        }
        assert!(!policy.contains("unsafe-inline"), "{policy}");
        let scripts = html.matches("<script").count();
        assert!(scripts >= 1, "the hydration loader is inline");
        assert_eq!(
            html.matches(&format!("<script nonce=\"{nonce}\"")).count()
                + html
                    .matches(&format!("<script type=\"module\" nonce=\"{nonce}\""))
                    .count(),
            scripts,
            "every script carries this response's nonce: {html}"
        );
        nonce
    }))
    .await;
    assert_ne!(nonces[0], nonces[1], "a nonce per response");
    // JSON, redirects and static files may run nothing at all.
    for (path, status) in [
        ("/api/v1/patches", StatusCode::OK),
        ("/api/v1/patches/99", StatusCode::NOT_FOUND),
    ] {
        let response = alice.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-security-policy"],
            graftbench::web::NON_PAGE_CSP,
            "{path}"
        );
    }
    let anonymous = server
        .anonymous()
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        anonymous.headers()["content-security-policy"],
        graftbench::web::NON_PAGE_CSP
    );
    server.stop().await;
}

/// Finding 3: 100,000 ids took 35 s a request before the count was checked.
async fn a_huge_cve_list_is_refused_with_nothing_stored(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let before = server.db.row_counts().await.unwrap();
    let ids: Vec<String> = (0..100_000).map(|n| format!("CVE-2024-{n:05}")).collect();
    let response = submit(
        &server,
        &alice,
        json!({ "title": "t", "cves": ids, "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("at most 64 CVE ids"),
        "{body}"
    );
    assert_eq!(server.db.row_counts().await.unwrap(), before);
    server.stop().await;
}

/// Finding 2: a `diff --git` header with no hunks was accepted as a file.
async fn a_file_with_no_hunks_and_no_change_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let before = server.db.row_counts().await.unwrap();
    let header_only = "diff --git a/x.c b/x.c\nindex 0123456..789abcd 100644\n";
    let response = submit(
        &server,
        &alice,
        json!({ "title": "t", "diff": header_only }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The worst header of the report, as large as a diff may be: refused, and quickly
    // enough that the request does not time out (no timing is asserted).
    let spaces = format!("diff --git a/x{} b/x\n", " b/x".repeat(1_200_000));
    let response = submit(&server, &alice, json!({ "title": "t", "diff": spaces })).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(server.db.row_counts().await.unwrap(), before);
    server.stop().await;
}

/// Low limits for the sign-in tests.
async fn limited_server(backend: Backend, per_account: u32, per_address: u32) -> TestServer {
    TestServer::start_configured(backend, |config| {
        config.sign_in.per_account_per_minute = per_account;
        config.sign_in.per_address_per_minute = per_address;
    })
    .await
}

async fn try_sign_in(server: &TestServer, name: &str, password: &str) -> reqwest::Response {
    server
        .anonymous()
        .post(server.url("/login"))
        .form(&[("username", name), ("password", password)])
        .send()
        .await
        .expect("sign-in request")
}

/// Finding 4: 200 wrong passwords for one account were each answered.
async fn sign_in_is_limited_per_account_and_audited_as_a_lockout(backend: Backend) {
    let server = limited_server(backend, 3, 1000).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    for _ in 0..3 {
        let response = try_sign_in(&server, "alice", "wrong password").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    // Now even the right password waits: the guesser cannot tell it was right.
    for password in ["wrong again", PASSWORD] {
        let response = try_sign_in(&server, "Alice", password).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "{wait}");
        let page = response.text().await.unwrap();
        assert!(page.contains("Too many sign-in attempts"), "{page}");
    }
    // Other accounts are not locked out.
    assert_eq!(
        try_sign_in(&server, "bob", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let events = server.db.audit_events().await.unwrap();
    let locked: Vec<_> = events
        .iter()
        .filter(|e| e.action == "session.sign_in_locked")
        .collect();
    assert_eq!(locked.len(), 1, "one lockout, audited once");
    assert_eq!(locked[0].actor, "anonymous");
    assert!(locked[0].details.contains("\"attempted_user\":\"Alice\""));
    assert!(locked[0].details.contains("\"address\":\"127.0.0.1\""));
    let failed = events
        .iter()
        .filter(|e| e.action == "session.sign_in_failed")
        .count();
    assert_eq!(
        failed, 3,
        "throttled attempts are not checked, so not failures"
    );
    server.stop().await;
}

async fn sign_in_is_limited_per_address_across_accounts(backend: Backend) {
    let server = limited_server(backend, 1000, 4).await;
    server.add_user("alice", &[Role::Author]).await;
    for n in 0..4 {
        let response = try_sign_in(&server, &format!("guess{n}"), "x").await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let response = try_sign_in(&server, "alice", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // The address limit is not an account lockout.
    let events = server.db.audit_events().await.unwrap();
    assert!(!events.iter().any(|e| e.action == "session.sign_in_locked"));
    server.stop().await;
}

/// Finding 4: unbounded concurrent hashing took the server from 260 MiB to 1.3 GiB.
async fn password_hashing_runs_in_bounded_slots(backend: Backend) {
    let server = TestServer::start_configured(backend, |config| {
        config.sign_in.hashing_concurrency = 1;
    })
    .await;
    server.add_user("alice", &[Role::Author]).await;
    let statuses: Vec<StatusCode> = futures::future::join_all((0..24).map(|_| async {
        try_sign_in(&server, "alice", "wrong password")
            .await
            .status()
    }))
    .await;
    let busy = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(
        busy >= 1,
        "24 at once with one slot: some are told to retry: {statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SEE_OTHER || *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    // The slot is free again afterwards.
    assert_eq!(
        try_sign_in(&server, "alice", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    server.stop().await;
}

/// Finding 5: each cache miss started its own render of the same revision.
async fn concurrent_views_of_a_new_revision_share_one_render(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let diff: String = (0..3000)
        .map(|n| format!("-\tint old_{n} = {n};\n+\tint new_{n} = {n} + 1;\n"))
        .collect();
    let diff = format!("--- a/x.c\n+++ b/x.c\n@@ -1,3000 +1,3000 @@\n{diff}");
    let response = submit(&server, &alice, json!({ "title": "big", "diff": diff })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let workbench = DbWorkbench::new(
        server.db.clone(),
        Arc::new(DiffRenderer::new()),
        Arc::new(Default::default()),
    );
    let user = server
        .db
        .user_by_name("alice")
        .await
        .unwrap()
        .expect("alice")
        .user;
    let pages =
        futures::future::join_all((0..8).map(|_| workbench.page(&user, 1, None, false))).await;
    assert!(pages.iter().all(Result::is_ok));
    // A long revision is shown plain while it is highlighted: views until then start
    // nothing more.
    let mut views = 8;
    loop {
        let page = workbench.page(&user, 1, None, false).await.unwrap();
        views += 1;
        if page.shown.highlighted {
            break;
        }
        assert!(views < 2000, "highlighted within a minute or so");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        workbench.renders().started(),
        1,
        "{views} views, one render"
    );
    server.stop().await;
}

/// Finding 8: bytes changed in the database were served as the revision reviewers approved.
async fn an_altered_diff_is_never_served(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let response = submit(
        &server,
        &alice,
        json!({ "title": "t", "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    sqlx::query("UPDATE diff_blobs SET content = $1")
        .bind(b"--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+evil\n".to_vec())
        .execute(server.db.pool())
        .await
        .unwrap();
    for path in ["/patches/1", "/api/v1/patches/1/revisions/1/diff"] {
        let response = alice.get(server.url(path)).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "{path}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("evil"), "{path}: {body}");
    }
    server.stop().await;
}

/// Finding 9: `?error=` put any text from a link onto the page.
async fn a_refusal_message_comes_from_the_session_not_the_url(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("grace", &[Role::Admin]).await;
    let grace = server.signed_in("grace").await;
    let forged = grace
        .get(server.url("/admin?error=Your+session+expired:+sign+in+at+evil.example"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!forged.contains("evil.example"), "{forged}");
    // A real refusal: the message shows once, on the page the form went back to.
    let response = grace
        .post(server.url("/admin/users/grace/roles"))
        .form(&[("role_reviewer", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/admin");
    let page = grace.get(server.url("/admin")).send().await.unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("last admin"), "{html}");
    let again = grace.get(server.url("/admin")).send().await.unwrap();
    assert!(!again.text().await.unwrap().contains("last admin"));
    server.stop().await;
}

/// Finding 9: a half-sent request held its connection for 45 s and more.
async fn a_half_sent_request_is_closed_and_connections_are_capped(backend: Backend) {
    let server = TestServer::start_configured(backend, |config| {
        config.serve.header_read_timeout = Duration::from_secs(1);
        config.serve.max_connections = 3;
    })
    .await;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut half = tokio::net::TcpStream::connect(&address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Bounded so a regression fails instead of hanging; the server closes it after 1 s.
    let read = tokio::time::timeout(Duration::from_secs(30), half.read_to_end(&mut answer))
        .await
        .expect("the server closes a connection whose headers do not arrive");
    assert!(read.is_ok());
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Three open, idle connections fill the cap: a fourth is closed at once.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = tokio::net::TcpStream::connect(&address).await.unwrap();
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), fourth.read_to_end(&mut answer))
        .await
        .expect("refused at once");
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    drop(idle);
    // Once they are gone (closed by the header timeout at the latest), it answers again.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(r) = reqwest::get(server.url("/healthz")).await {
            served = r.status() == StatusCode::OK;
            if served {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served);
    server.stop().await;
}

/// Finding 6: a user whose roles were all removed still read every patch.
async fn an_account_without_roles_reads_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    server.add_user("grace", &[Role::Admin]).await;
    let alice = server.signed_in("alice").await;
    let response = submit(
        &server,
        &alice,
        json!({ "title": "a draft", "draft": true, "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let bob = server.signed_in("bob").await;
    let grace = server.signed_in("grace").await;
    let response = grace
        .put(server.url("/api/v1/users/bob/roles"))
        .json(&json!({ "roles": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for path in ["/api/v1/patches", "/api/v1/patches/1"] {
        let response = bob.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.contains("no role"), "{body}");
        assert!(!body.contains("a draft"));
    }
    for path in ["/", "/patches/1"] {
        let response = bob.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(!response.text().await.unwrap().contains("a draft"));
    }
    let response = bob.post(server.url("/logout")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    server.stop().await;
}

/// Finding 6: there was no way to disable an account.
async fn a_disabled_account_is_signed_out_at_once_and_cannot_sign_in(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("carol", &[Role::Reviewer]).await;
    server.add_user("grace", &[Role::Admin]).await;
    let carol = server.signed_in("carol").await;
    let grace = server.signed_in("grace").await;
    // Only admins may.
    let response = carol
        .post(server.url("/api/v1/users/grace/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = grace
        .post(server.url("/api/v1/users/carol/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Her open session is over with the next request.
    let response = carol
        .get(server.url("/api/v1/patches"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // And the right password no longer signs her in; the answer is the same as a wrong one.
    let response = try_sign_in(&server, "carol", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/login?error=1&next=/");
    // The last enabled admin cannot be disabled, by herself or anyone.
    let response = grace
        .post(server.url("/api/v1/users/grace/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let users: Value = grace
        .get(server.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let carol_row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "carol")
        .unwrap();
    assert!(carol_row["disabled_at"].is_string(), "{carol_row}");
    // Enabled again through the admin page's form, she signs in.
    let response = grace
        .post(server.url("/admin/users/carol/enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    server.signed_in("carol").await;
    let actions: Vec<(String, String, String)> = server
        .db
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "user.disabled" || e.action == "user.enabled")
        .map(|e| (e.actor, e.action, e.subject))
        .collect();
    assert_eq!(
        actions,
        [
            ("grace".into(), "user.disabled".into(), "user:carol".into()),
            ("grace".into(), "user.enabled".into(), "user:carol".into()),
        ]
    );
    server.stop().await;
}

/// Finding 9: arguments a server function cannot decode answered 500.
async fn bad_server_function_arguments_are_a_400(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let response = alice
        .post(server.url("/api/ui/patch"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("id=not-a-number")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

async fn create_user(server: &TestServer, admin: &reqwest::Client, name: &str, roles: &[&str]) {
    let response = admin
        .post(server.url("/api/v1/users"))
        .json(&json!({ "username": name, "password": PASSWORD, "roles": roles }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "{name}");
}

async fn approve(server: &TestServer, client: &reqwest::Client) -> reqwest::Response {
    let patch: Value = client
        .get(server.url("/api/v1/patches/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sha = patch["review"]["current_sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .post(server.url("/api/v1/patches/1/actions/approve"))
        .json(&json!({ "revision_sha256": sha }))
        .send()
        .await
        .unwrap()
}

/// Finding 10: an admin created two reviewer accounts and approved a patch with them.
async fn an_admin_cannot_make_the_reviewers_that_approve_the_admins_patch(backend: Backend) {
    let server = TestServer::start(backend).await;
    // Accounts made on the command line (the break-glass path) are in force at once.
    server.add_user("grace", &[Role::Admin, Role::Author]).await;
    server.add_user("henry", &[Role::Admin]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let grace = server.signed_in("grace").await;
    let response = submit(
        &server,
        &grace,
        json!({ "title": "t", "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
                "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // Grace makes two reviewers: the grants wait for a second admin.
    create_user(&server, &grace, "sock1", &["reviewer"]).await;
    create_user(&server, &grace, "sock2", &["reviewer"]).await;
    let sock1 = server.signed_in("sock1").await;
    let response = sock1
        .get(server.url("/api/v1/patches"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "no role in force yet"
    );
    // Grace cannot confirm her own grant, nor can the grantee.
    let response = grace
        .post(server.url("/api/v1/users/sock1/roles/reviewer/confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // Henry, a second admin, confirms both.
    let henry = server.signed_in("henry").await;
    for name in ["sock1", "sock2"] {
        let response = henry
            .post(server.url(&format!("/api/v1/users/{name}/roles/reviewer/confirm")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{name}");
    }
    // In force now, but never for Grace's own patch.
    for name in ["sock1", "sock2"] {
        let client = server.signed_in(name).await;
        let response = approve(&server, &client).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
        let body = response.text().await.unwrap();
        assert!(body.contains("four eyes"), "{body}");
        // So the patch does not wait for them, and Grace cannot ask them to review it.
        let waiting: Value = client
            .get(server.url("/api/v1/patches?needs=me"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(waiting, json!([]), "{name}: needs my review");
        let response = grace
            .post(server.url("/api/v1/patches/1/reviewers"))
            .json(&json!({ "reviewer": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}"
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("granted by a writer"), "{body}");
    }
    let patch: Value = grace
        .get(server.url("/api/v1/patches/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let candidates: Vec<&str> = patch["review"]["request_candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert_eq!(candidates, ["bob"], "whom Grace may ask");
    // A reviewer nobody involved in the patch granted counts as ever.
    let bob = server.signed_in("bob").await;
    let waiting: Value = bob
        .get(server.url("/api/v1/patches?needs=me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(waiting.as_array().unwrap().len(), 1, "bob: needs my review");
    assert_eq!(approve(&server, &bob).await.status(), StatusCode::OK);
    let patch: Value = grace
        .get(server.url("/api/v1/patches/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patch["review"]["approvals"], 1, "{patch}");
    assert_eq!(patch["review"]["state"], "in_review");
    // Grants of the admin role wait too: no admin can make a second admin alone.
    let response = grace
        .put(server.url("/api/v1/users/bob/roles"))
        .json(&json!({ "roles": ["reviewer", "admin"] }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["roles"], json!(["reviewer"]), "{body}");
    assert_eq!(body["pending"], json!(["admin"]), "{body}");
    let actions: Vec<String> = server
        .db
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("user.role"))
        .collect();
    assert_eq!(
        actions,
        [
            "user.role_grant_confirmed",
            "user.role_grant_confirmed",
            "user.role_grants_pending"
        ]
    );
    server.stop().await;
}

/// The policy setting: a team that keeps four eyes elsewhere can turn it off.
async fn without_four_eyes_grants_are_in_force_at_once(backend: Backend) {
    let mut policy = graftbench_domain::eligibility::LoadedPolicy::default();
    policy.policy.role_grants_need_second_admin = false;
    let server = TestServer::start_with(backend, policy).await;
    server.add_user("grace", &[Role::Admin]).await;
    let grace = server.signed_in("grace").await;
    create_user(&server, &grace, "rita", &["reviewer"]).await;
    let rita = server.signed_in("rita").await;
    let response = rita
        .get(server.url("/api/v1/patches"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    server.stop().await;
}

/// Finding 9: the Host header was not checked and the Origin's scheme was ignored.
async fn the_host_and_the_origin_scheme_must_be_this_servers(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    // A DNS-rebinding page reaches the server under its own name.
    let response = alice
        .get(server.url("/api/v1/patches"))
        .header("host", "evil.example:80")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST);
    let host = server.base.trim_start_matches("http://").to_owned();
    let post = |origin: String| {
        alice
            .post(server.url("/api/v1/patches"))
            .header("origin", origin)
            .json(&json!({ "title": "t", "diff": ONE_LINE_FIX }))
            .send()
    };
    // The same host under another scheme is another origin.
    assert_eq!(
        post(format!("https://{host}")).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(format!("http://{host}")).await.unwrap().status(),
        StatusCode::CREATED
    );
    server.stop().await;
}

/// Finding 9: no `Cache-Control: no-store` on signed-in answers, no HSTS over HTTPS.
async fn signed_in_answers_are_never_stored_and_https_is_strict(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    for path in ["/", "/api/v1/patches", "/patches/new"] {
        let response = alice.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
        assert!(!response.headers().contains_key("strict-transport-security"));
    }
    server.stop().await;
    let server = TestServer::start_configured(backend, |config| config.cookie_secure = true).await;
    let response = server
        .anonymous()
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    server.stop().await;
}

/// Finding 8: deleting and rehashing events passed `audit verify`; rows written beside an
/// intact chain are now named (the chain's own anchor outside the database is issue 11).
async fn sign_offs_and_revisions_written_around_the_server_are_named(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    server.add_user("carol", &[Role::Reviewer]).await;
    let alice = server.signed_in("alice").await;
    let response = submit(
        &server,
        &alice,
        json!({ "title": "t", "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let bob = server.signed_in("bob").await;
    assert_eq!(approve(&server, &bob).await.status(), StatusCode::OK);
    assert_eq!(
        server.db.unexplained_rows().await.unwrap(),
        Vec::<String>::new()
    );
    // Someone with the database adds carol's approval and a second revision.
    sqlx::query(
        "INSERT INTO sign_offs (patch_id, revision, revision_sha256, user_id, verdict, comment,
             created_at)
         SELECT s.patch_id, s.revision, s.revision_sha256, u.id, 'approve', '', s.created_at
         FROM sign_offs s, users u WHERE u.username = 'carol'",
    )
    .execute(server.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO revisions (patch_id, number, diff_sha256, format, submitted_by, created_at)
         SELECT patch_id, 2, diff_sha256, format, submitted_by, created_at FROM revisions",
    )
    .execute(server.db.pool())
    .await
    .unwrap();
    let unexplained = server.db.unexplained_rows().await.unwrap();
    assert_eq!(unexplained.len(), 2, "{unexplained:?}");
    assert!(unexplained[0].contains("(carol: approve on revision 1 of patch 1)"));
    assert!(unexplained[1].starts_with("revision 2 of patch 1"));
    assert!(
        server.db.verify_audit().await.unwrap().is_ok(),
        "the chain itself is intact"
    );
    server.stop().await;
}

/// Finding 8, on PostgreSQL: the owner migrates; the role `serve` runs as reads and
/// appends audit events but cannot edit or delete them. Both roles are plain (a superuser
/// bypasses grants), made for this test on the test server and dropped after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runtime_role_cannot_edit_or_delete_audit_events() {
    use sqlx::Connection;
    let admin_url = graftbench_tests::postgres_admin_url();
    let (scheme_user, rest) = admin_url
        .rsplit_once('@')
        .expect("user@host in the admin URL");
    let scheme = &scheme_user[..scheme_user.find("://").expect("a scheme") + 3];
    let host = rest.split('/').next().expect("a host");
    let tag = format!("{}_{:08x}", std::process::id(), rand::random::<u32>());
    let (owner, runtime, database) = (
        format!("gb_owner_{tag}"),
        format!("gb_runtime_{tag}"),
        format!("gb_roles_{tag}"),
    );
    let url = |role: &str| format!("{scheme}{role}@{host}/{database}");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    for statement in [
        format!("CREATE ROLE {owner} LOGIN NOSUPERUSER"),
        format!("CREATE ROLE {runtime} LOGIN NOSUPERUSER"),
        format!("CREATE DATABASE {database} OWNER {owner}"),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    let result = async {
        // The owner migrates and grants.
        let owned = graftbench::store::Database::connect(&url(&owner)).await?;
        graftbench::store::sessions::DbSessionStore::open(&owned).await?;
        owned.grant_runtime_role(&runtime).await?;
        let refused = owned.grant_runtime_role("postgres").await;
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("superuser, which no grant can limit"));
        owned.close().await;
        // The runtime role runs the server's work: sessions, users, events appended.
        let db = graftbench::store::Database::connect(&url(&runtime)).await?;
        graftbench::store::sessions::DbSessionStore::open(&db).await?;
        let hash = graftbench::service::auth::hash_password(PASSWORD).unwrap();
        graftbench::service::accounts::create_user(&db, "alice", "Alice", &hash, &[Role::Author])
            .await?;
        db.record(
            "alice",
            graftbench_domain::audit::AuditAction::SessionSignedIn,
            &graftbench_domain::audit::AuditSubject::User("alice".into()),
            &json!({}),
        )
        .await?;
        assert!(db.verify_audit().await?.is_ok());
        // The runtime role grows the Merkle tree (and stores checkpoints) but cannot
        // change what is in it.
        let leaves = graftbench::service::tree::StoredTree::new(&db)
            .grow()
            .await
            .unwrap();
        assert_eq!(leaves, 2);
        db.store_checkpoint(2, "root", "note").await?;
        for statement in [
            "UPDATE audit_events SET actor = 'mallory'",
            "DELETE FROM audit_events",
            "TRUNCATE audit_events",
            "UPDATE audit_tree SET hash = hash",
            "DELETE FROM audit_tree",
            "UPDATE audit_checkpoints SET note = ''",
            "DELETE FROM audit_checkpoints",
            "DROP TABLE audit_events",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
        ] {
            let error = sqlx::query(statement)
                .execute(db.pool())
                .await
                .expect_err(statement);
            assert!(
                error.to_string().contains("permission denied")
                    || error.to_string().contains("must be owner"),
                "{statement}: {error}"
            );
        }
        assert_eq!(db.audit_events().await?.len(), 2, "nothing was changed");
        db.close().await;
        Ok::<_, graftbench::store::DbError>(())
    }
    .await;
    for statement in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {runtime}"),
        format!("DROP ROLE IF EXISTS {owner}"),
    ] {
        sqlx::query(&statement).execute(&mut admin).await.unwrap();
    }
    result.unwrap();
}

/// Second review, high: one admin disabled the demo accounts as `serve` advised, then
/// enabled `grace` (published password, admin) and confirmed their own grants with it.
async fn enabling_an_account_again_is_granting_its_roles_again(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("grace", &[Role::Admin]).await;
    server.add_user("henry", &[Role::Admin]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    server.add_user("demo", &[Role::Admin]).await;
    server.db.mark_demo("demo").await.unwrap();
    let grace = server.signed_in("grace").await;
    for (name, verb) in [("bob", "disable"), ("demo", "disable"), ("bob", "enable")] {
        let response = grace
            .post(server.url(&format!("/api/v1/users/{name}/{verb}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{verb} {name}");
    }
    // Bob is back, but his reviewer role waits for a second admin.
    let bob = server.signed_in("bob").await;
    let response = bob.get(server.url("/api/v1/patches")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let henry = server.signed_in("henry").await;
    let response = henry
        .post(server.url("/api/v1/users/bob/roles/reviewer/confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = bob.get(server.url("/api/v1/patches")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A demo account is not enabled from the web at all.
    let response = grace
        .post(server.url("/api/v1/users/demo/enable"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("user passwd demo"));
    assert_eq!(
        server.db.unexplained_rows().await.unwrap(),
        Vec::<String>::new()
    );
    server.stop().await;
}

/// Second review, medium: an admin made an author account, submitted through it, and had
/// a reviewer the admin granted approve.
async fn an_admin_cannot_approve_through_an_author_account_the_admin_made(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("grace", &[Role::Admin]).await;
    server.add_user("henry", &[Role::Admin]).await;
    let henry = server.signed_in("henry").await;
    create_user(&server, &henry, "proxy", &["author"]).await;
    create_user(&server, &henry, "sock", &["reviewer"]).await;
    let grace = server.signed_in("grace").await;
    let response = grace
        .post(server.url("/api/v1/users/sock/roles/reviewer/confirm"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let proxy = server.signed_in("proxy").await;
    let response = submit(
        &server,
        &proxy,
        json!({ "title": "t", "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
                "diff": ONE_LINE_FIX }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let sock = server.signed_in("sock").await;
    let response = approve(&server, &sock).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("made the account"));
    server.stop().await;
}

/// Second review, low: repeated roles answered 500; a refusal meant for one user showed to
/// the next one signing in on the same browser; the no-role page could not sign out.
async fn account_fixes_from_the_second_review(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("grace", &[Role::Admin]).await;
    server.add_user("henry", &[Role::Admin]).await;
    let grace = server.signed_in("grace").await;
    let response = grace
        .post(server.url("/api/v1/users"))
        .json(&json!({ "username": "dup", "password": PASSWORD, "roles": ["author", "author"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = grace
        .post(server.url("/api/v1/users"))
        .json(
            &json!({ "username": "esc", "display_name": "Eve\u{1b}[2J\nroot", "password": PASSWORD,
                       "roles": ["author"] }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Grace's form is refused (there is no user `nobody`), which leaves a message in her
    // session; then henry signs in on the same browser.
    let response = grace
        .post(server.url("/admin/users/nobody/roles"))
        .form(&[("role_reviewer", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = grace
        .post(server.url("/login"))
        .form(&[("username", "henry"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = grace
        .get(server.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("nobody"),
        "grace's message reached henry: {page}"
    );
    // The no-role page's one form may post.
    let response = grace
        .put(server.url("/api/v1/users/dup/roles"))
        .json(&json!({ "roles": [] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let dup = server.signed_in("dup").await;
    let response = dup.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let policy = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(policy.contains("form-action 'self'"), "{policy}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    // A patch id that is not a number is a 404 page, not a 200.
    server.add_user("alice", &[Role::Author]).await;
    let alice = server.signed_in("alice").await;
    let response = alice.get(server.url("/patches/abc")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// Sends raw request bytes and returns the status line's code (0 when the connection
/// closed without an answer).
async fn raw_status(server: &TestServer, request: String) -> u16 {
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Second review, low: two Host headers, or a request line naming another host, were
/// served; health probes by address were refused; one address could take every
/// connection.
async fn host_checks_from_the_second_review(backend: Backend) {
    let server = TestServer::start_configured(backend, |config| {
        config.serve.max_connections_per_address = 2;
    })
    .await;
    let host = server.base.trim_start_matches("http://").to_owned();
    let two_hosts = format!(
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(&server, two_hosts).await, 400);
    let absolute = format!(
        "GET http://evil.example/login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(&server, absolute).await, 421);
    let probe = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_owned();
    assert_eq!(raw_status(&server, probe.clone()).await, 200);
    // Two idle connections from this address fill its share; the server still answers
    // others (none here), and this address again once one closes.
    let first = tokio::net::TcpStream::connect(&host).await.unwrap();
    let _second = tokio::net::TcpStream::connect(&host).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        raw_status(&server, probe.clone()).await,
        0,
        "a third is closed"
    );
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(raw_status(&server, probe).await, 200);
    server.stop().await;
}
