//! HTTP behaviour against a real server, on SQLite and on PostgreSQL.

use graftbench_app::model::Role;
use graftbench_tests::{
    fixture, on_both_databases, session_cookie_of, submit_json, Backend, TestServer, PASSWORD,
};
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

on_both_databases!(
    the_audit_trail_records_changes_and_detects_tampering,
    every_route_but_sign_in_needs_a_session,
    sign_in_rotates_the_session_id,
    wrong_password_is_refused,
    logout_ends_the_session,
    reading_pages_does_not_rewrite_the_session_each_time,
    json_submission_creates_patch_and_revision_one,
    format_patch_upload_takes_its_subject_as_title,
    each_bad_submission_gets_its_4xx_and_stores_nothing,
    auditor_cannot_submit,
    form_submission_redirects_to_the_patch_page,
    refused_form_comes_back_with_the_reason_and_the_input,
    cross_site_posts_are_refused,
    auditors_export_the_trail_as_json_lines_and_csv,
    audit_proofs_check_against_the_roots_they_name,
    archive_segments_are_listed_and_downloaded_by_auditors,
    patch_page_renders_the_diff_side_by_side,
    a_long_revision_shows_its_first_lines_at_once_and_loads_the_rest_on_demand,
    unknown_patch_is_a_404,
);

const FIX: &str = "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n\
@@ -7,6 +7,8 @@ static int cmdline_proc_show(struct seq_file *m, void *v)\n \n static int x(void)\n {\n\
+\tif (!saved_command_line)\n+\t\treturn -EINVAL;\n \tseq_puts(m, saved_command_line);\n \tseq_putc(m, '\\n');\n \treturn 0;\n";

async fn every_route_but_sign_in_needs_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let client = server.anonymous();
    for path in [
        "/",
        "/patches/new",
        "/patches/1",
        "/nowhere",
        "/patches/1?rev=1",
        "/patches/1/revisions/1.patch",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "GET {path}");
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with("/login?next="),
            "GET {path} -> {location}"
        );
    }
    for path in [
        "/api/v1/patches",
        "/api/v1/patches/1",
        "/api/v1/patches/1/revisions/1/diff",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "GET {path}");
    }
    for path in [
        "/api/v1/patches",
        "/api/ui/patches",
        "/api/ui/patch",
        "/api/ui/me",
        "/api/ui/impact",
        "/api/ui/file_hunks",
    ] {
        let response = client.post(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "POST {path}");
    }
    for path in ["/patches", "/logout"] {
        let response = client.post(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "POST {path}");
    }
    for path in [
        "/login",
        "/healthz",
        "/pkg/graftbench_ui.js",
        "/style/graftbench.css",
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
    }
    server.stop().await;
}

async fn sign_in_rotates_the_session_id(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.anonymous();
    let login = |client: reqwest::Client| {
        let url = server.url("/login");
        async move {
            client
                .post(url)
                .form(&[("username", "alice"), ("password", PASSWORD)])
                .send()
                .await
                .unwrap()
        }
    };
    let first = login(client.clone()).await;
    let first_cookie = session_cookie_of(&first).expect("a session cookie");
    let set_cookie = first.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(set_cookie.contains("httponly"), "{set_cookie}");
    assert!(set_cookie.contains("samesite=lax"), "{set_cookie}");
    // Signing in again with the same session must hand out a new id...
    let second = login(client.clone()).await;
    let second_cookie = session_cookie_of(&second).expect("a new session cookie");
    assert_ne!(first_cookie, second_cookie);
    // ...and the old id must be worthless.
    let replay = server
        .anonymous()
        .get(server.url("/api/v1/patches"))
        .header("cookie", &first_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    let current = server
        .anonymous()
        .get(server.url("/api/v1/patches"))
        .header("cookie", &second_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), StatusCode::OK);
    server.stop().await;
}

async fn wrong_password_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    for (name, password) in [("alice", "wrong password"), ("mallory", PASSWORD)] {
        let client = server.anonymous();
        let response = client
            .post(server.url("/login"))
            .form(&[
                ("username", name),
                ("password", password),
                ("next", "/patches/1"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()["location"],
            "/login?error=1&next=/patches/1"
        );
        let after = client
            .get(server.url("/api/v1/patches"))
            .send()
            .await
            .unwrap();
        assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    // Both attempts are in the audit trail (PCI-DSS 10.2.1.4), without the passwords.
    // Whoever typed a name is not known: the actor is anonymous, the name what was
    // attempted (security review, finding 9).
    let failed: Vec<(String, String)> = server
        .db
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "session.sign_in_failed")
        .map(|e| {
            assert!(!e.details.contains("wrong password"));
            (e.actor, e.subject)
        })
        .collect();
    assert_eq!(
        failed,
        [
            ("anonymous".to_owned(), "user:alice".to_owned()),
            ("anonymous".to_owned(), "user:mallory".to_owned())
        ]
    );
    server.stop().await;
}

async fn logout_ends_the_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let client = server.signed_in("bob").await;
    assert_eq!(
        client
            .get(server.url("/api/v1/patches"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let out = client.post(server.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        client
            .get(server.url("/api/v1/patches"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

/// A session that expires after a time without use had its row written on every
/// request, only to move the expiry: reads of pages wrote to the database.
async fn reading_pages_does_not_rewrite_the_session_each_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let client = server.signed_in("bob").await;
    let expiries = || async {
        let sql = match backend {
            Backend::Sqlite => "SELECT CAST(expiry_date AS TEXT) AS e FROM tower_sessions",
            Backend::Postgres => "SELECT expiry_date::text AS e FROM tower_sessions.session",
        };
        let rows: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(server.db.pool())
            .await
            .unwrap();
        rows
    };
    let read = |path: &'static str| {
        let request = client.get(server.url(path));
        async move {
            assert_eq!(
                request.send().await.unwrap().status(),
                StatusCode::OK,
                "{path}"
            );
        }
    };
    read("/api/v1/patches").await;
    let before = expiries().await;
    assert_eq!(before.len(), 1, "one session: {before:?}");
    // Expiries are kept to the second at least: without the fix each read moved it.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    read("/").await;
    read("/api/v1/patches").await;
    assert_eq!(
        expiries().await,
        before,
        "the reads left the session row alone"
    );
    // Signing out still ends it at once.
    let out = client.post(server.url("/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        client
            .get(server.url("/api/v1/patches"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    server.stop().await;
}

async fn json_submission_creates_patch_and_revision_one(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let response = submit_json(
        &server,
        &client,
        json!({
            "title": "proc: cmdline: reject a missing command line",
            "cves": ["cve-2024-0001", "CVE-2024-0002"],
            "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "diff": FIX,
        }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_i64().unwrap();
    assert_eq!(location, format!("/patches/{id}"));
    assert_eq!(body["revision"]["number"], 1);
    let sha = hex::encode(Sha256::digest(FIX.as_bytes()));
    assert_eq!(body["revision"]["sha256"], sha);

    let list: Value = client
        .get(server.url("/api/v1/patches"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["cves"], json!(["CVE-2024-0001", "CVE-2024-0002"]));
    assert_eq!(list[0]["author"], "alice (test)");
    assert_eq!(list[0]["revisions"], 1);

    let detail: Value = client
        .get(server.url(&format!("/api/v1/patches/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["patch"]["cvss_vector"],
        "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
    );
    // The patch with its CVEs in their order (one statement, a row per CVE).
    assert_eq!(
        detail["patch"]["cves"],
        json!(["CVE-2024-0001", "CVE-2024-0002"])
    );
    assert_eq!(detail["revisions"][0]["sha256"], sha);

    let raw = client
        .get(server.url(&format!("/api/v1/patches/{id}/revisions/1/diff")))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.bytes().await.unwrap().as_ref(), FIX.as_bytes());

    // The page's download: the same bytes, as a file named by patch and revision.
    let download = client
        .get(server.url(&format!("/patches/{id}/revisions/1.patch")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-disposition"],
        format!("attachment; filename=\"graftbench-{id}-r1.patch\"").as_str()
    );
    assert_eq!(download.bytes().await.unwrap().as_ref(), FIX.as_bytes());
    for wrong in ["2.patch", "1.diff", "one.patch", ".patch", "1"] {
        let response = client
            .get(server.url(&format!("/patches/{id}/revisions/{wrong}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{wrong}");
        let body = response.text().await.unwrap();
        assert!(body.contains("not found"), "{wrong}: {body}");
    }
    server.stop().await;
}

async fn format_patch_upload_takes_its_subject_as_title(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let mail = fixture("format-patch-multi.patch");
    let form = Form::new().text("cves", "CVE-2026-12345").part(
        "diff_file",
        Part::bytes(mail.clone()).file_name("0001-proc-cmdline.patch"),
    );
    let response = client
        .post(server.url("/api/v1/patches"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["title"],
        "proc: cmdline: reject a missing command line"
    );
    // The uploaded bytes are kept exactly: the hash is over the whole mail.
    assert_eq!(
        body["revision"]["sha256"],
        hex::encode(Sha256::digest(&mail))
    );
    server.stop().await;
}

async fn each_bad_submission_gets_its_4xx_and_stores_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let before = server.db.row_counts().await.unwrap();
    let with_diff = |diff: &str| json!({ "title": "t", "diff": diff });
    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "prose",
            with_diff("Please apply my fix.\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a diff",
        ),
        (
            "binary patch",
            with_diff(&String::from_utf8_lossy(&fixture(
                "format-patch-binary.patch",
            ))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "binary patch for `kernel/blob.bin`",
        ),
        (
            "parent path",
            with_diff("--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "has a `..` component",
        ),
        (
            "absolute path",
            with_diff("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is absolute",
        ),
        (
            "empty diff",
            with_diff(""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no diff",
        ),
        (
            "blank diff",
            with_diff(" \n\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "the diff is empty",
        ),
        (
            "malformed hunk header",
            with_diff("--- a/x.c\n+++ b/x.c\n@@ -1,two +1 @@\n-a\n+b\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "line 3: malformed hunk header",
        ),
        (
            "truncated hunk",
            with_diff("--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n-a\n+b\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "ends early",
        ),
        (
            "bad CVE",
            json!({ "title": "t", "cves": "CVE-2024-1 ", "diff": FIX }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not a CVE id",
        ),
        (
            "bad CVSS",
            json!({ "title": "t", "cvss_vector": "high", "diff": FIX }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "is not a valid CVSS 3.x or 4.0 vector",
        ),
        (
            "no title",
            json!({ "diff": FIX }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a title is required",
        ),
        (
            "unknown field",
            json!({ "title": "t", "diff": FIX, "approved": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `approved`",
        ),
        (
            "diff over 5 MiB",
            with_diff(&"+".repeat(5 * 1024 * 1024 + 1)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "the limit is 5242880 bytes",
        ),
    ];
    for (name, body, status, message) in cases {
        let response = submit_json(&server, &client, body).await;
        assert_eq!(response.status(), status, "{name}");
        let error: Value = response.json().await.unwrap();
        let text = error["error"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{name}: {text:?} lacks {message:?}");
    }
    // A body over the request limit: the server answers 413 as soon as the limit is
    // passed and closes the connection, so this speaks HTTP by hand (a client still
    // writing the rest of the body would see a broken pipe instead of the answer).
    assert_eq!(oversized_post(&server, "alice").await, 413);
    let not_json = client
        .post(server.url("/api/v1/patches"))
        .header("content-type", "application/json")
        .body("{\"title\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::BAD_REQUEST);
    let wrong_type = client
        .post(server.url("/api/v1/patches"))
        .header("content-type", "text/plain")
        .body(FIX)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let both = Form::new().text("title", "t").text("diff", FIX).part(
        "diff_file",
        Part::bytes(FIX.as_bytes().to_vec()).file_name("fix.patch"),
    );
    let both = client
        .post(server.url("/api/v1/patches"))
        .multipart(both)
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        server.db.row_counts().await.unwrap(),
        before,
        "nothing was stored"
    );
    server.stop().await;
}

async fn auditor_cannot_submit(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("frank", &[Role::Auditor]).await;
    let client = server.signed_in("frank").await;
    let before = server.db.row_counts().await.unwrap();
    let response = submit_json(&server, &client, json!({ "title": "t", "diff": FIX })).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "submitting a fix needs the author role");
    assert_eq!(server.db.row_counts().await.unwrap(), before);
    server.stop().await;
}

fn form(title: &str, diff: &str) -> Form {
    Form::new()
        .text("title", title.to_owned())
        .text("cves", "CVE-2024-1086")
        .text("cvss_vector", "")
        .text("diff", diff.to_owned())
        .part("diff_file", Part::bytes(Vec::new()).file_name(""))
}

async fn form_submission_redirects_to_the_patch_page(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    // A browser sends the textarea with CRLF line ends and marks the request same-origin.
    let response = client
        .post(server.url("/patches"))
        .header("sec-fetch-site", "same-origin")
        .header("origin", &server.base)
        .multipart(form("Pasted fix", &FIX.replace('\n', "\r\n")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/patches/"), "{location}");
    let detail: Value = client
        .get(server.url(&format!("/api/v1{location}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail["patch"]["title"], "Pasted fix");
    assert_eq!(
        detail["revisions"][0]["sha256"],
        hex::encode(Sha256::digest(FIX.as_bytes())),
        "pasted CRLF is stored as the LF diff it was copied from"
    );
    server.stop().await;
}

async fn refused_form_comes_back_with_the_reason_and_the_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let before = server.db.row_counts().await.unwrap();
    let response = client
        .post(server.url("/patches"))
        .multipart(form(
            "My <careful> title",
            "--- /etc/shadow\n+++ /etc/shadow\n@@ -1 +1 @@\n-a\n+b\n",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("id=\"submit-error\""), "error shown");
    assert!(html.contains("is absolute"), "reason shown");
    assert!(
        html.contains("My &lt;careful&gt; title"),
        "title kept, escaped"
    );
    assert!(html.contains("/etc/shadow"), "pasted diff kept");
    assert_eq!(server.db.row_counts().await.unwrap(), before);
    server.stop().await;
}

async fn cross_site_posts_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let before = server.db.row_counts().await.unwrap();
    let cross_site = client
        .post(server.url("/patches"))
        .header("sec-fetch-site", "cross-site")
        .multipart(form("t", FIX))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    // The form's own path (where the page posts, so a refusal hydrates) is guarded alike.
    let cross_site_form = client
        .post(server.url("/patches/new"))
        .header("sec-fetch-site", "cross-site")
        .multipart(form("t", FIX))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site_form.status(), StatusCode::FORBIDDEN);
    let foreign_origin = client
        .post(server.url("/api/v1/patches"))
        .header("origin", "http://evil.example")
        .json(&json!({ "title": "t", "diff": FIX }))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign_origin.status(), StatusCode::FORBIDDEN);
    let logout = client
        .post(server.url("/logout"))
        .header("sec-fetch-site", "same-site")
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::FORBIDDEN);
    assert_eq!(server.db.row_counts().await.unwrap(), before);
    server.stop().await;
}

async fn patch_page_renders_the_diff_side_by_side(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    let mail = fixture("format-patch-multi.patch");
    let created: Value = client
        .post(server.url("/api/v1/patches"))
        .multipart(Form::new().part("diff_file", Part::bytes(mail).file_name("fix.patch")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let page = client
        .get(server.url(&format!("/patches/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<table class=\"diff split\""),
        "side by side by default"
    );
    for path in [
        "fs/proc/cmdline.c",
        "include/linux/counter.h",
        "kernel/new_helper.c",
        "kernel/old_helper.c",
        "kernel/renamed_dst.c",
    ] {
        assert!(html.contains(path), "{path} listed");
    }
    // Highlighted C: keywords and types carry classes; git's section heading is shown.
    assert!(
        html.contains("<span class=\"k\">if</span>"),
        "keyword highlighted"
    );
    assert!(
        html.contains("<span class=\"k\">return</span>"),
        "keyword highlighted"
    );
    assert!(
        html.contains("class=\"section\">static inline int counter_next(int v)"),
        "{html}"
    );
    assert!(html.contains("data-ln=\"10\""), "line numbers");
    let assets: Value = serde_json::from_str(
        &std::fs::read_to_string(graftbench_tests::site_root().join("assets.json")).unwrap(),
    )
    .unwrap();
    let script = assets["js"].as_str().unwrap();
    assert!(html.contains(script), "hydration script {script}");
    server.stop().await;
}

/// A diff of `files` C files of one 60-line hunk each (30 removed, 30 added), each line
/// naming its file and number so that a test can tell which lines a page carries.
fn long_diff(files: usize) -> String {
    let mut diff = String::new();
    for file in 0..files {
        diff.push_str(&format!(
            "--- a/drivers/part{file}.c\n+++ b/drivers/part{file}.c\n@@ -1,30 +1,30 @@\n"
        ));
        for line in 0..30 {
            diff.push_str(&format!("-\tint old_{file}_{line} = {line};\n"));
        }
        for line in 0..30 {
            diff.push_str(&format!("+\tint new_{file}_{line} = {line} + 1;\n"));
        }
    }
    diff
}

async fn a_long_revision_shows_its_first_lines_at_once_and_loads_the_rest_on_demand(
    backend: Backend,
) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    let client = server.signed_in("alice").await;
    // 40 files of 60 lines: 2,400 lines, past what a page carries at first (1,000).
    let created = submit_json(
        &server,
        &client,
        json!({ "title": "long", "diff": long_diff(40) }),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let page = |query: &'static str| {
        let request = client.get(server.url(&format!("/patches/{id}{query}")));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.text().await.unwrap()
        }
    };
    let html = page("").await;
    // The first 16 files (960 lines) are on the page; the 17th would pass 1,000 lines.
    assert!(
        html.contains("new_0_0") && html.contains("new_15_29"),
        "first files shown"
    );
    assert!(
        !html.contains("new_16_0") && !html.contains("new_39_0"),
        "later lines held back"
    );
    // Every file is still listed, and each held-back one says what it holds.
    assert!(html.contains("drivers/part39.c"), "every file listed");
    assert!(
        html.contains("Show 60 more lines (1 hunk)"),
        "a held-back file offers its lines"
    );
    assert!(
        html.contains(&format!(
            "href=\"/patches/{id}?rev=1&amp;lines=all#file-39\""
        )),
        "without JavaScript, a link to every line"
    );
    let all = page("?lines=all").await;
    assert!(
        all.contains("new_39_29") && !all.contains("more lines ("),
        "?lines=all has all"
    );
    // What the page loads a held-back file with, once hydrated.
    let hunks = |file: usize, from: usize| {
        client
            .post(server.url("/api/ui/file_hunks"))
            .form(&[
                ("id", id.to_string()),
                ("revision", "1".into()),
                ("file", file.to_string()),
                ("from", from.to_string()),
            ])
            .send()
    };
    let loaded: Value = hunks(39, 0).await.unwrap().json().await.unwrap();
    let lines = loaded["hunks"][0]["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 60);
    assert!(
        lines[59]["h"].as_str().unwrap().contains("new_39_29"),
        "{loaded}"
    );
    let none: Value = hunks(39, 1).await.unwrap().json().await.unwrap();
    assert_eq!(none["hunks"], json!([]), "past the last hunk: none");
    assert_eq!(
        hunks(40, 0).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "no 41st file"
    );
    // Stored as a long revision, it was highlighted at once, off the request: its page
    // soon shows colours (a view meanwhile shows plain text and says so).
    let mut highlighted = false;
    for _ in 0..600 {
        let html = page("").await;
        if html.contains("<span class=\"t\">int</span>") {
            assert!(!html.contains("shown as plain text"), "no plain-text note");
            highlighted = true;
            break;
        }
        assert!(html.contains("shown as plain text while it is highlighted"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(highlighted, "highlighted within a minute");
    server.stop().await;
}

async fn unknown_patch_is_a_404(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let client = server.signed_in("bob").await;
    let page = client.get(server.url("/patches/999")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(page.text().await.unwrap().contains("patch 999 not found"));
    let api = client
        .get(server.url("/api/v1/patches/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    let nowhere = client
        .get(server.url("/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// POSTs a JSON body one byte over the server's limit and returns the status code.
async fn oversized_post(server: &TestServer, user: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cookie = server.session_cookie(user).await;
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let sent = graftbench::web::MAX_BODY_BYTES + 1;
    let head = format!(
        "POST /api/v1/patches HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sent + 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 64 * 1024];
    let mut written = 0;
    while written < sent {
        let n = chunk.len().min(sent - written);
        // The server may stop reading once it has seen enough: that is its right.
        if stream.write_all(&chunk[..n]).await.is_err() {
            break;
        }
        written += n;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    );
    let _ = read.await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

async fn the_audit_trail_records_changes_and_detects_tampering(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let client = server.signed_in("alice").await;
    for title in ["first", "second"] {
        let response = submit_json(
            &server,
            &client,
            json!({ "title": title, "cves": ["CVE-2024-1086"], "diff": FIX }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let events = server.db.audit_events().await.unwrap();
    let actions: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.subject.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("system", "user.created", "user:alice"),
            ("system", "user.created", "user:bob"),
            ("alice", "session.signed_in", "user:alice"),
            ("alice", "patch.submitted", "patch:1"),
            ("alice", "patch.submitted", "patch:2"),
        ]
    );
    let details: Value = serde_json::from_str(&events[3].details).unwrap();
    assert_eq!(details["title"], "first");
    assert_eq!(server.db.verify_audit().await.unwrap(), Ok(5));

    let pool = server.db.pool();
    let first_bad = || async { server.db.verify_audit().await.unwrap().unwrap_err().seq };
    // Edited: the details of event 4.
    sqlx::query("UPDATE audit_events SET details = '{}' WHERE seq = 4")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(first_bad().await, 4);
    sqlx::query("UPDATE audit_events SET details = $1 WHERE seq = 4")
        .bind(&events[3].details)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(server.db.verify_audit().await.unwrap(), Ok(5));
    // Reordered: events 2 and 3 swap places (numbers kept).
    for (seq, from) in [(2, &events[2]), (3, &events[1])] {
        sqlx::query(
            "UPDATE audit_events SET at = $1, actor = $2, action = $3, subject = $4,
             details = $5, prev_hash = $6, hash = $7 WHERE seq = $8",
        )
        .bind(&from.at)
        .bind(&from.actor)
        .bind(&from.action)
        .bind(&from.subject)
        .bind(&from.details)
        .bind(&from.prev_hash)
        .bind(&from.hash)
        .bind(seq)
        .execute(pool)
        .await
        .unwrap();
    }
    assert_eq!(first_bad().await, 2);
    // Deleted: event 2 gone (after putting 2 and 3 back would not matter: 2 is missing).
    sqlx::query("DELETE FROM audit_events WHERE seq = 2")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(first_bad().await, 2);
    server.stop().await;
}

async fn auditors_export_the_trail_as_json_lines_and_csv(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("frank", &[Role::Auditor]).await;
    let alice = server.signed_in("alice").await;
    let response = alice
        .post(server.url("/api/v1/patches"))
        .json(&json!({ "title": "t", "diff": FIX }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // Not for authors.
    let refused = alice
        .get(server.url("/api/v1/audit/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let frank = server.signed_in("frank").await;
    let before = server.db.audit_events().await.unwrap();
    let jsonl = frank
        .get(server.url("/api/v1/audit/export?format=jsonl"))
        .send()
        .await
        .unwrap();
    assert_eq!(jsonl.status(), StatusCode::OK);
    assert!(jsonl.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/jsonl"));
    assert!(jsonl.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment; filename=\"graftbench-audit-"));
    let text = jsonl.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let header = &lines[0]["header"];
    assert_eq!(header["format"], "graftbench-audit-export/1");
    assert_eq!(header["exported_by"], "frank");
    assert_eq!(
        header["source"],
        server.base.as_str(),
        "the instance's public URL"
    );
    // Every event written before the export, in order, with the fields that verify.
    assert_eq!(header["events"], before.len() as i64, "{header}");
    assert_eq!(lines.len(), before.len() + 1);
    for (line, event) in lines[1..].iter().zip(&before) {
        assert_eq!(line["seq"], event.seq);
        assert_eq!(line["hash"], event.hash.as_str());
        assert_eq!(line["prev_hash"], event.prev_hash.as_str());
        assert_eq!(line["details"], event.details.as_str());
    }
    // The export is an audit event itself.
    let after = server.db.audit_events().await.unwrap();
    let exported = after
        .iter()
        .find(|e| e.action == "audit.exported")
        .expect("the export was audited");
    assert_eq!(exported.actor, "frank");
    assert_eq!(exported.subject, "audit:trail");

    // CSV, filtered to the patch: the header as # lines, then columns and rows.
    let csv = frank
        .get(server.url("/api/v1/audit/export?format=csv&subject=patch:1&from=2000-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), StatusCode::OK);
    let text = csv.text().await.unwrap();
    assert!(text.contains("# events,1\r\n"), "{text}");
    assert!(
        text.contains("seq,at,actor,action,subject,details,prev_hash,hash\r\n"),
        "{text}"
    );
    assert!(text.contains(",alice,patch.submitted,patch:1,"), "{text}");
    for bad in ["format=xml", "from=yesterday"] {
        let refused = frank
            .get(server.url(&format!("/api/v1/audit/export?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }

    server.stop().await;
}

async fn audit_proofs_check_against_the_roots_they_name(backend: Backend) {
    use tlog_tiles::{check_record, check_tree, record_hash, Hash};
    let server = TestServer::start(backend).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("frank", &[Role::Auditor]).await;
    let alice = server.signed_in("alice").await;
    for title in ["one", "two", "three"] {
        let created = alice
            .post(server.url("/api/v1/patches"))
            .json(&json!({ "title": title, "diff": FIX }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
    }
    let refused = alice
        .get(server.url("/api/v1/audit/proof?seq=1&size=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let frank = server.signed_in("frank").await;
    let events = server.db.audit_events().await.unwrap();
    let size = events.len() as u64;
    let hash = |text: &str| Hash::parse_hash(text).expect("a base64 hash");
    for event in &events {
        let answer: Value = frank
            .get(server.url(&format!(
                "/api/v1/audit/proof?seq={}&size={size}",
                event.seq
            )))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let proof: Vec<Hash> = answer["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hash(h.as_str().unwrap()))
            .collect();
        let mut leaf = [0u8; 32];
        hex::decode_to_slice(&event.hash, &mut leaf).unwrap();
        check_record(
            &proof,
            size,
            hash(answer["root"].as_str().unwrap()),
            (event.seq - 1) as u64,
            record_hash(&leaf),
        )
        .unwrap_or_else(|e| panic!("event {}: {e:?}", event.seq));
    }
    let answer: Value = frank
        .get(server.url(&format!("/api/v1/audit/consistency?from=2&to={size}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proof: Vec<Hash> = answer["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash(h.as_str().unwrap()))
        .collect();
    check_tree(
        &proof,
        size,
        hash(answer["to_root"].as_str().unwrap()),
        2,
        hash(answer["from_root"].as_str().unwrap()),
    )
    .expect("the first two events' tree is a prefix of the whole");
    for bad in [
        format!("proof?seq=0&size={size}"),
        "proof?seq=2&size=1".to_owned(),
        format!("proof?seq=1&size={}", size + 100),
        "consistency?from=3&to=2".to_owned(),
    ] {
        let refused = frank
            .get(server.url(&format!("/api/v1/audit/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // Checkpoints: none can be signed before the server has a key; then one is, listed,
    // downloadable and signed by the key the API publishes, over the root the proofs name.
    let no_key = frank
        .post(server.url("/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::CONFLICT);
    assert!(no_key
        .text()
        .await
        .unwrap()
        .contains("graftbench audit key"));
    graftbench::service::checkpoints::load_or_create_key(&server.data_dir).unwrap();
    let made = frank
        .post(server.url("/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), StatusCode::CREATED);
    let made: Value = made.json().await.unwrap();
    assert_eq!(made["size"], size);
    let vkey = frank
        .get(server.url("/api/v1/audit/key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let note = frank
        .get(server.url(&format!("/api/v1/audit/checkpoints/{size}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(note, made["note"].as_str().unwrap());
    let checkpoint = graftbench::service::checkpoints::open(note.as_bytes(), &vkey).unwrap();
    assert_eq!(checkpoint.size(), size);
    let root: Value = frank
        .get(server.url(&format!("/api/v1/audit/proof?seq=1&size={size}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        checkpoint.hash().to_string(),
        root["root"].as_str().unwrap()
    );
    let listed: Value = frank
        .get(server.url("/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["checkpoints"][0]["size"], size);
    // Signing again with nothing new gives the same checkpoint.
    let again: Value = frank
        .post(server.url("/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["note"], made["note"]);
    let missing = frank
        .get(server.url("/api/v1/audit/checkpoints/999"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for path in [
        "/api/v1/audit/key",
        "/api/v1/audit/checkpoints",
        &format!("/api/v1/audit/checkpoints/{size}"),
    ] {
        let refused = alice.get(server.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let refused = alice
        .post(server.url("/api/v1/audit/checkpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}

async fn archive_segments_are_listed_and_downloaded_by_auditors(backend: Backend) {
    use graftbench_domain::audit::{EventFields, GENESIS};
    let server = TestServer::start(backend).await;
    server.add_user("frank", &[Role::Auditor]).await;
    server.add_user("alice", &[Role::Author]).await;
    // Both accounts made in 2024: the chain rewritten as if they had been.
    let mut prev = GENESIS.to_owned();
    for event in server.db.audit_events().await.unwrap() {
        let at = format!("2024-03-0{}T09:00:00.000Z", event.seq);
        let hash = EventFields {
            at: &at,
            prev_hash: &prev,
            ..event.fields()
        }
        .hash();
        sqlx::query("UPDATE audit_events SET at = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&at)
            .bind(&prev)
            .bind(&hash)
            .bind(event.seq)
            .execute(server.db.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_head SET hash = $1, at = $2 WHERE id = 1")
            .bind(&hash)
            .bind(&at)
            .execute(server.db.pool())
            .await
            .unwrap();
        prev = hash;
    }
    let frank = server.signed_in("frank").await;
    let alice = server.signed_in("alice").await;
    let (_, vkey) = graftbench::service::checkpoints::load_or_create_key(&server.data_dir).unwrap();
    let archived = graftbench::service::retention::archive(
        &server.db,
        &server.data_dir,
        &Default::default(),
        "test",
    )
    .await
    .unwrap()
    .expect("the 2024 events are past twelve months");
    assert_eq!(
        (archived.segment.first_seq, archived.segment.last_seq),
        (1, 2)
    );

    let listed: Value = frank
        .get(server.url("/api/v1/audit/segments"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let segment = &listed["segments"][0];
    assert_eq!(
        (segment["first_seq"].as_i64(), segment["last_seq"].as_i64()),
        (Some(1), Some(2))
    );
    let download = frank
        .get(server.url("/api/v1/audit/segments/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let disposition = download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.contains(segment["file"].as_str().unwrap()),
        "{disposition}"
    );
    let bytes = download.bytes().await.unwrap();
    assert_eq!(
        hex::encode(Sha256::digest(&bytes)),
        segment["sha256"].as_str().unwrap()
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let outcome = graftbench::service::evidence::verify::verify(file.path(), &vkey).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.problems);
    // Reading it is access to the trail: recorded.
    let last = server.db.audit_events().await.unwrap().pop().unwrap();
    assert_eq!(last.action, "audit.exported");
    assert!(last.details.contains("archive_segment"), "{}", last.details);
    let missing = frank
        .get(server.url("/api/v1/audit/segments/99"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    for path in ["/api/v1/audit/segments", "/api/v1/audit/segments/1"] {
        let refused = alice.get(server.url(path)).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
    server.stop().await;
}

/// The build's fingerprinted files: pages link to them, browsers may keep them for good,
/// and the brotli or gzip copy made at build time is what is sent. Plain names are
/// checked again on every use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprinted_assets_are_cached_for_good_and_sent_precompressed() {
    let server = TestServer::start(Backend::Sqlite).await;
    let site = graftbench_tests::site_root();
    let listed: Value =
        serde_json::from_str(&std::fs::read_to_string(site.join("assets.json")).unwrap()).unwrap();
    let login = server
        .anonymous()
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for key in ["js", "wasm", "css"] {
        let url = listed[key].as_str().unwrap();
        assert!(login.contains(url), "the page links {url}");
        let on_disk =
            |suffix: &str| std::fs::read(site.join(format!("{}{suffix}", &url[1..]))).unwrap();
        for (encoding, suffix) in [("br", ".br"), ("gzip", ".gz")] {
            // Raw bytes: the client must not decode them.
            let client = reqwest::Client::new();
            let response = client
                .get(server.url(url))
                .header("accept-encoding", encoding)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            let headers = response.headers().clone();
            assert_eq!(headers["content-encoding"], encoding, "{url}");
            assert_eq!(
                headers["cache-control"], "public, max-age=31536000, immutable",
                "{url}"
            );
            let body = response.bytes().await.unwrap();
            assert_eq!(
                body.as_ref(),
                on_disk(suffix).as_slice(),
                "{url} {encoding}"
            );
        }
    }
    // The plain names still answer, revalidated each time.
    let plain = server
        .anonymous()
        .get(server.url("/pkg/graftbench_ui.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(plain.headers()["cache-control"], "no-cache");
    let missing = server
        .anonymous()
        .get(server.url("/pkg/graftbench_ui.0123456789abcdef.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(
        missing.headers().get("cache-control").is_none(),
        "a 404 is not kept"
    );
    server.stop().await;
}
