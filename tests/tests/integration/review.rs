//! Review over HTTP, on SQLite and on PostgreSQL: who may do what in which state, stale
//! and racing sign-offs, revisions, line comments, roles and the audit trail they leave.

use graftbench_app::model::Role;
use graftbench_tests::{on_both_databases, Backend, TestServer, PASSWORD};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};

on_both_databases!(
    every_role_state_and_action_does_exactly_what_the_rules_say,
    a_sign_off_on_an_older_revision_is_refused_and_outdated_ones_do_not_count,
    racing_approvals_both_land_and_the_state_is_right,
    line_comments_thread_and_resolve_where_the_diff_has_lines,
    exceptions_need_a_security_officer_and_a_reason,
    admins_manage_roles_and_the_audit_trail_shows_every_step,
    deadlines_order_the_dashboard_and_the_policy_decides_with_the_approvals,
    the_dashboard_filters_by_text_state_target_author_deadline_and_whose_review_it_needs,
    reviewers_are_asked_for_by_the_author_or_a_release_manager_and_audited,
    reviewed_marks_are_per_user_and_reset_when_a_revision_changes_the_file,
    drafts_are_seen_by_their_author_only_until_published_with_a_verdict_or_alone,
    without_a_source_tree_the_lines_around_hunks_come_from_revisions_of_the_same_original,
    a_patch_page_view_reads_what_it_shows_once,
);

/// A fix whose added line can be varied, so each upload is a new revision.
fn fix(variant: usize) -> String {
    format!(
        "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n\
@@ -7,6 +7,8 @@ static int cmdline_proc_show(struct seq_file *m, void *v)\n \n static int x(void)\n {{\n\
+\tif (!saved_command_line)\n+\t\treturn -EINVAL; /* {variant} */\n \tseq_puts(m, saved_command_line);\n \tseq_putc(m, '\\n');\n \treturn 0;\n"
    )
}

const HIGH: &str = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H";

struct Review {
    server: TestServer,
    clients: HashMap<&'static str, Client>,
    uploads: usize,
}

/// The cast: `owner` writes the patches and also holds the reviewer role (four eyes must
/// still stop them); `author` is another author.
const CAST: &[(&str, &[Role])] = &[
    ("owner", &[Role::Author, Role::Reviewer]),
    ("author", &[Role::Author]),
    ("rev1", &[Role::Reviewer]),
    ("rev2", &[Role::Reviewer]),
    ("so", &[Role::SecurityOfficer]),
    ("rm", &[Role::ReleaseManager]),
    ("auditor", &[Role::Auditor]),
    ("admin", &[Role::Admin]),
];

impl Review {
    async fn start(backend: Backend) -> Review {
        Review::start_with(
            backend,
            graftbench_domain::eligibility::LoadedPolicy::default(),
        )
        .await
    }

    async fn start_with(
        backend: Backend,
        policy: graftbench_domain::eligibility::LoadedPolicy,
    ) -> Review {
        let server = TestServer::start_with(backend, policy).await;
        let mut clients = HashMap::new();
        for (name, roles) in CAST {
            server.add_user(name, roles).await;
            clients.insert(*name, server.signed_in(name).await);
        }
        Review {
            server,
            clients,
            uploads: 0,
        }
    }

    fn as_(&self, who: &str) -> &Client {
        &self.clients[who]
    }

    async fn submit(&self, who: &str, body: Value) -> i64 {
        let response = self
            .as_(who)
            .post(self.server.url("/api/v1/patches"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json::<Value>().await.unwrap()["id"]
            .as_i64()
            .unwrap()
    }

    /// Uploads `diff` as `who`'s new revision of patch `id`, which must be accepted.
    async fn upload(&self, who: &str, id: i64, diff: &str) {
        let response = self
            .as_(who)
            .post(self.server.url(&format!("/api/v1/patches/{id}/revisions")))
            .json(&json!({ "diff": diff }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{who} uploads to {id}"
        );
    }

    async fn post_action(&self, who: &str, id: i64, action: &str, body: Value) -> Response {
        self.as_(who)
            .post(
                self.server
                    .url(&format!("/api/v1/patches/{id}/actions/{action}")),
            )
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// GET as `who`, which must answer 200.
    async fn get_ok(&self, who: &str, path: &str) -> Response {
        let response = self
            .as_(who)
            .get(self.server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{who} GET {path}");
        response
    }

    async fn get_json(&self, who: &str, path: &str) -> Value {
        self.get_ok(who, path).await.json().await.unwrap()
    }

    async fn get_html(&self, who: &str, path: &str) -> String {
        self.get_ok(who, path).await.text().await.unwrap()
    }

    async fn patch(&self, id: i64) -> Value {
        self.get_json("auditor", &format!("/api/v1/patches/{id}"))
            .await
    }

    async fn state(&self, id: i64) -> String {
        self.patch(id).await["review"]["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn current_sha(&self, id: i64) -> String {
        self.patch(id).await["review"]["current_sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Takes an action by name (the API's names) and returns the status and message.
    async fn act(&mut self, who: &str, id: i64, action: &str) -> (StatusCode, String) {
        let url = |path: String| self.server.url(&path);
        let request = match action {
            "comment" => self
                .as_(who)
                .post(url(format!("/api/v1/patches/{id}/comments")))
                .json(&json!({
                    "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": 10,
                    "body": format!("{who} was here"),
                })),
            "upload_revision" => {
                self.uploads += 1;
                self.as_(who)
                    .post(url(format!("/api/v1/patches/{id}/revisions")))
                    .json(&json!({ "diff": fix(1000 + self.uploads) }))
            }
            _ => {
                let sha = self.current_sha(id).await;
                self.as_(who)
                    .post(url(format!("/api/v1/patches/{id}/actions/{action}")))
                    .json(&json!({ "revision_sha256": sha, "comment": "reasons given" }))
            }
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, text)
    }

    async fn must(&mut self, who: &str, id: i64, action: &str) {
        let (status, text) = self.act(who, id, action).await;
        assert!(
            status.is_success(),
            "{who} {action} on {id}: {status} {text}"
        );
    }

    /// A fresh patch by `owner` in `state`.
    async fn patch_in(&mut self, state: &str) -> i64 {
        let id = self
            .submit(
                "owner",
                json!({
                    "title": format!("matrix patch in {state}"),
                    "cvss_vector": HIGH,
                    "category": "severe_instability",
                    "tier": "emergency",
                    "draft": state == "draft",
                    "diff": fix(0),
                }),
            )
            .await;
        match state {
            "draft" | "in_review" => {}
            "changes_requested" => self.must("rev1", id, "reject").await,
            "approved" => {
                self.must("so", id, "sign_exception").await;
                self.must("rev1", id, "approve").await;
                self.must("rev2", id, "approve").await;
            }
            "rejected" => self.must("so", id, "decline").await,
            "withdrawn" => self.must("owner", id, "withdraw").await,
            other => panic!("no setup for {other}"),
        }
        assert_eq!(self.state(id).await, state, "setup of {state}");
        id
    }
}

const STATES: [&str; 6] = [
    "draft",
    "in_review",
    "changes_requested",
    "approved",
    "rejected",
    "withdrawn",
];
const ACTIONS: [&str; 10] = [
    "submit",
    "upload_revision",
    "approve",
    "reject",
    "withdraw_sign_off",
    "sign_exception",
    "comment",
    "decline",
    "withdraw",
    "reopen",
];

/// What must succeed, written out by hand from the rules (not derived from the
/// code under test): everything else must be refused with a 4xx and change nothing.
fn expected_successes() -> BTreeSet<(&'static str, &'static str, &'static str)> {
    let active = ["draft", "in_review", "changes_requested", "approved"];
    let open = ["in_review", "changes_requested", "approved"];
    let mut ok = BTreeSet::new();
    ok.insert(("draft", "owner", "submit"));
    ok.insert(("withdrawn", "owner", "reopen"));
    for state in active {
        ok.insert((state, "owner", "upload_revision"));
        ok.insert((state, "owner", "withdraw"));
        for who in ["owner", "author", "rev1", "rev2", "so", "rm"] {
            ok.insert((state, who, "comment"));
        }
    }
    for state in open {
        for who in ["rev1", "rev2"] {
            ok.insert((state, who, "approve"));
            ok.insert((state, who, "reject"));
        }
        ok.insert((state, "so", "sign_exception"));
        ok.insert((state, "so", "decline"));
        ok.insert((state, "admin", "decline"));
    }
    // Withdrawing a sign-off needs one to withdraw: rev1's reject in changes requested,
    // both reviewers' approvals in approved.
    ok.insert(("changes_requested", "rev1", "withdraw_sign_off"));
    ok.insert(("approved", "rev1", "withdraw_sign_off"));
    ok.insert(("approved", "rev2", "withdraw_sign_off"));
    // The same sign-off twice is refused: rev1 has rejected in changes requested; both
    // reviewers have approved, and the officer signed the exception, in approved.
    ok.remove(&("changes_requested", "rev1", "reject"));
    ok.remove(&("approved", "rev1", "approve"));
    ok.remove(&("approved", "rev2", "approve"));
    ok.remove(&("approved", "so", "sign_exception"));
    ok
}

async fn every_role_state_and_action_does_exactly_what_the_rules_say(backend: Backend) {
    let mut review = Review::start(backend).await;
    let expected = expected_successes();
    let mut succeeded = BTreeSet::new();
    let mut offered = BTreeSet::new();
    for state in STATES {
        // A refused request changes nothing, so one patch serves until something succeeds.
        let mut id = review.patch_in(state).await;
        for (who, _) in CAST {
            // What the page offers this user is exactly what will succeed.
            let page = review.get_json(who, &format!("/api/v1/patches/{id}")).await;
            for action in page["review"]["actions"].as_array().unwrap() {
                let action = ACTIONS
                    .into_iter()
                    .find(|a| action == *a)
                    .unwrap_or_else(|| panic!("unknown action {action}"));
                offered.insert((state, *who, action));
            }
            for action in ACTIONS {
                let before = (
                    review.server.db.row_counts().await.unwrap(),
                    review.server.db.audit_events().await.unwrap().len(),
                );
                let (status, text) = review.act(who, id, action).await;
                if status.is_success() {
                    succeeded.insert((state, *who, action));
                    id = review.patch_in(state).await;
                    continue;
                }
                assert!(
                    [
                        StatusCode::FORBIDDEN,
                        StatusCode::CONFLICT,
                        StatusCode::UNPROCESSABLE_ENTITY
                    ]
                    .contains(&status),
                    "{who} {action} in {state}: {status} {text}"
                );
                let message: Value = serde_json::from_str(&text).unwrap();
                assert!(
                    !message["error"].as_str().unwrap_or_default().is_empty(),
                    "{who} {action} in {state}: no message"
                );
                let after = (
                    review.server.db.row_counts().await.unwrap(),
                    review.server.db.audit_events().await.unwrap().len(),
                );
                assert_eq!(before, after, "{who} {action} in {state} wrote something");
                assert_eq!(review.state(id).await, state);
            }
        }
    }
    let unexpected: Vec<_> = succeeded.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&succeeded).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "succeeded but should not: {unexpected:?}\nshould but did not: {missing:?}"
    );
    let unexpected: Vec<_> = offered.difference(&expected).collect();
    let missing: Vec<_> = expected.difference(&offered).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "offered but refused: {unexpected:?}\nallowed but not offered: {missing:?}"
    );

    // The author holds the reviewer role and still cannot approve their own revision.
    let id = review.patch_in("in_review").await;
    let (status, text) = review.act("owner", id, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        text.contains("the author of a patch cannot approve it"),
        "{text}"
    );
    review.server.stop().await;
}

async fn a_sign_off_on_an_older_revision_is_refused_and_outdated_ones_do_not_count(
    backend: Backend,
) {
    let mut review = Review::start(backend).await;
    let id = review
        .submit(
            "owner",
            json!({ "title": "t", "cvss_vector": HIGH, "diff": fix(1) }),
        )
        .await;
    let r1 = review.current_sha(id).await;
    review.must("rev1", id, "approve").await;
    review.must("owner", id, "upload_revision").await;
    let r2 = review.current_sha(id).await;
    assert_ne!(r1, r2);

    // rev2 reviewed r1 and sends its hash: refused, saying which revision is current.
    let response = review
        .post_action("rev2", id, "approve", json!({ "revision_sha256": r1 }))
        .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let message = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!("revision r1 ({}) is no longer current", &r1[..12]))
            && message.contains(&format!("revision 2 (sha256 {r2}) is")),
        "{message}"
    );
    // Without a hash at all: refused too.
    let response = review.post_action("rev2", id, "approve", json!({})).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // rev1's approval of r1 is shown as outdated and not counted.
    let page = review.patch(id).await;
    assert_eq!(page["review"]["approvals"], 0);
    assert_eq!(page["review"]["sign_offs"][0]["revision"], 1);
    assert_eq!(page["review"]["sign_offs"][0]["outdated"], true);
    review.must("rev1", id, "approve").await;
    review.must("rev2", id, "approve").await;
    assert_eq!(review.state(id).await, "approved");
    // A third revision starts the count again.
    review.must("owner", id, "upload_revision").await;
    assert_eq!(review.state(id).await, "in_review");

    // The interdiff of r1 and r2 shows the changed line, numbered as in each revision's
    // file, and nothing else: not the lines both add, not the hunk headers.
    let html = review
        .get_html("rev1", &format!("/patches/{id}/interdiff?from=1&to=2"))
        .await;
    assert!(
        html.contains("1001") && html.contains("id=\"interdiff\""),
        "{html}"
    );
    let interdiff = graftbench_tests::json_of(
        review
            .as_("rev1")
            .post(review.server.url("/api/ui/interdiff"))
            .form(&[("id", id), ("from", 1), ("to", 2)]),
    )
    .await;
    let changed: Vec<(String, Value, Value, bool)> = interdiff["files"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["hunks"].as_array().unwrap())
        .flat_map(|h| h["lines"].as_array().unwrap())
        .filter(|l| l["k"] != "c")
        .map(|l| {
            let html = l["h"].as_str().unwrap();
            (
                l["k"].as_str().unwrap().to_owned(),
                l["o"].clone(),
                l["n"].clone(),
                html.contains("-EINVAL"),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("d".to_owned(), json!(11), Value::Null, true),
            ("a".to_owned(), Value::Null, json!(11), true),
        ],
        "{interdiff}"
    );
    assert_eq!(interdiff["message"], json!([]));
    review.server.stop().await;
}

async fn racing_approvals_both_land_and_the_state_is_right(backend: Backend) {
    let review = Review::start(backend).await;
    for round in 0..4 {
        let id = review
            .submit(
                "owner",
                json!({ "title": format!("race {round}"), "cvss_vector": HIGH, "diff": fix(round) }),
            )
            .await;
        let sha = review.current_sha(id).await;
        let approve = |who: &'static str| {
            let client = review.as_(who).clone();
            let url = review
                .server
                .url(&format!("/api/v1/patches/{id}/actions/approve"));
            let sha = sha.clone();
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({ "revision_sha256": sha }))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        };
        let (a, b) = (approve("rev1"), approve("rev2"));
        assert_eq!(a.await.unwrap(), StatusCode::OK);
        assert_eq!(b.await.unwrap(), StatusCode::OK);
        let page = review.patch(id).await;
        assert_eq!(page["review"]["state"], "approved", "round {round}");
        assert_eq!(page["review"]["approvals"], 2);
        // Exactly one recorded move to approved, after both sign-offs.
        let events = review.server.db.audit_events().await.unwrap();
        let subject = format!("patch:{id}");
        let mine: Vec<&str> = events
            .iter()
            .filter(|e| e.subject == subject)
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(
            mine,
            [
                "patch.submitted",
                "sign_off.approve",
                "sign_off.approve",
                "patch.state_changed"
            ]
        );
    }
    assert!(review.server.db.verify_audit().await.unwrap().is_ok());
    review.server.stop().await;
}

async fn line_comments_thread_and_resolve_where_the_diff_has_lines(backend: Backend) {
    let mut review = Review::start(backend).await;
    let id = review
        .submit("owner", json!({ "title": "t", "diff": fix(1) }))
        .await;
    let post = |who: &str, body: Value| {
        review
            .as_(who)
            .post(review.server.url(&format!("/api/v1/patches/{id}/comments")))
            .json(&body)
            .send()
    };
    let response = post(
        "rev1",
        json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": 11, "body": "why -EINVAL?" }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let thread = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    for (body, status) in [
        // No such line on that side of the diff.
        (
            json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": 99, "body": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "revision": 1, "path": "mm/nowhere.c", "side": "new", "line": 10, "body": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "left", "line": 10, "body": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "revision": 7, "path": "fs/proc/cmdline.c", "side": "new", "line": 10, "body": "x" }),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": 10, "body": "  " }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "thread": 999, "body": "reply" }),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let response = post("rev1", body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{body}");
    }
    let response = post(
        "owner",
        json!({ "thread": thread, "body": "the caller expects it" }),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let resolve = |who: &str, verb: &str| {
        review
            .as_(who)
            .post(
                review
                    .server
                    .url(&format!("/api/v1/patches/{id}/comments/{thread}/{verb}")),
            )
            .send()
    };
    assert_eq!(
        resolve("auditor", "resolve").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        resolve("rev1", "resolve").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        resolve("rev1", "resolve").await.unwrap().status(),
        StatusCode::CONFLICT
    );
    let page = review.patch(id).await;
    let threads = &page["review"]["threads"];
    assert_eq!(threads.as_array().unwrap().len(), 1);
    assert_eq!(threads[0]["line"], 11);
    assert_eq!(threads[0]["side"], "new");
    assert_eq!(threads[0]["comments"][1]["body"], "the caller expects it");
    assert_eq!(threads[0]["resolved"][0], "rev1 (test)");
    // The page shows the thread.
    let html = review.get_html("rev2", &format!("/patches/{id}")).await;
    let thread_html = html
        .split("class=\"thread resolved\"")
        .nth(1)
        .unwrap_or_else(|| panic!("no resolved thread on the page: {html}"));
    assert!(thread_html.contains("why -EINVAL?") && thread_html.contains("rev1 (test)"));
    // A comment is audited with its anchor.
    let events = review.server.db.audit_events().await.unwrap();
    let added: Vec<Value> = events
        .iter()
        .filter(|e| e.action == "comment.added")
        .map(|e| serde_json::from_str(&e.details).unwrap())
        .collect();
    assert_eq!(added.len(), 2);
    assert_eq!(added[0]["line"], 11);
    assert_eq!(added[1]["thread"], thread);
    review.must("owner", id, "withdraw").await;
    let (status, _) = review.act("rev1", id, "comment").await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "no comments on a closed patch"
    );
    review.server.stop().await;
}

async fn exceptions_need_a_security_officer_and_a_reason(backend: Backend) {
    let mut review = Review::start(backend).await;
    // A low score makes a vulnerability ineligible: approvals alone do not approve it.
    let low = "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N";
    let id = review
        .submit(
            "owner",
            json!({ "title": "low", "cvss_vector": low, "diff": fix(1) }),
        )
        .await;
    review.must("rev1", id, "approve").await;
    review.must("rev2", id, "approve").await;
    let page = review.patch(id).await;
    assert_eq!(page["review"]["state"], "in_review");
    assert_eq!(page["review"]["eligibility"]["eligible"], false);
    assert!(
        page["review"]["eligibility"]["cvss"]["score"]
            .as_f64()
            .unwrap()
            < 6.0
    );
    // A vulnerability has no exception to sign.
    let (status, _) = review.act("so", id, "sign_exception").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let id = review
        .submit(
            "owner",
            json!({ "title": "corrupts", "category": "data_corruption", "diff": fix(2) }),
        )
        .await;
    review.must("rev1", id, "approve").await;
    review.must("rev2", id, "approve").await;
    assert_eq!(review.state(id).await, "in_review");
    let sha = review.current_sha(id).await;
    let response = review
        .post_action(
            "so",
            id,
            "sign_exception",
            json!({ "revision_sha256": sha, "comment": " " }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let response = review
        .post_action("so", id, "sign_exception", json!({ "revision_sha256": &sha[..16], "comment": "ext4 journal corruption on every unclean shutdown" }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["state"], "approved");
    // A bad vector is refused at submission with the reason.
    let response = review
        .as_("owner")
        .post(review.server.url("/api/v1/patches"))
        .json(&json!({ "title": "t", "cvss_vector": "CVSS:3.1/AV:X", "diff": fix(3) }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    review.server.stop().await;
}

async fn admins_manage_roles_and_the_audit_trail_shows_every_step(backend: Backend) {
    // The mechanics of role management, with grants in force at once. Four eyes on grants
    // (the default policy) is tested in security.rs.
    let mut policy = graftbench_domain::eligibility::LoadedPolicy::default();
    policy.policy.role_grants_need_second_admin = false;
    let mut review = Review::start_with(backend, policy).await;
    let put_roles = |who: &str, user: &str, roles: Value| {
        review
            .as_(who)
            .put(review.server.url(&format!("/api/v1/users/{user}/roles")))
            .json(&json!({ "roles": roles }))
            .send()
    };
    assert_eq!(
        put_roles("rev1", "rev1", json!(["admin"]))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        put_roles("admin", "rm", json!(["release_manager", "reviewer"]))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        put_roles("admin", "admin", json!(["auditor"]))
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT,
        "the last admin keeps the role"
    );
    assert_eq!(
        put_roles("admin", "nobody", json!(["auditor"]))
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        put_roles("admin", "rm", json!(["root"]))
            .await
            .unwrap()
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Accounts from the API: admins only, checked fields, a usable login.
    let create = |who: &str, body: Value| {
        review
            .as_(who)
            .post(review.server.url("/api/v1/users"))
            .json(&body)
            .send()
    };
    let newcomer = json!({ "username": "dana", "display_name": "Dana", "password": PASSWORD,
                           "roles": ["reviewer"] });
    assert_eq!(
        create("rev1", newcomer.clone()).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    for (body, status) in [
        (
            json!({ "username": "x y", "password": PASSWORD, "roles": ["reviewer"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "username": "dana", "password": "short", "roles": ["reviewer"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({ "username": "dana", "password": PASSWORD, "roles": [] }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (newcomer.clone(), StatusCode::CREATED),
        (newcomer, StatusCode::CONFLICT),
    ] {
        assert_eq!(
            create("admin", body.clone()).await.unwrap().status(),
            status,
            "{body}"
        );
    }
    review.server.signed_in("dana").await;
    // The admin page's checkbox form: back to /admin, roles set exactly.
    let response = review
        .as_("admin")
        .post(review.server.url("/admin/users/dana/roles"))
        .form(&[("role_reviewer", "on"), ("role_auditor", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()["location"], "/admin");
    let users = review.get_json("admin", "/api/v1/users").await;
    let dana = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "dana")
        .unwrap()
        .clone();
    assert_eq!(dana["roles"], json!(["reviewer", "auditor"]));

    // The new role works at once: rm now reviews.
    let id = review
        .submit(
            "owner",
            json!({ "title": "t", "cvss_vector": HIGH, "diff": fix(1) }),
        )
        .await;
    review.must("rm", id, "approve").await;
    review.must("rev2", id, "approve").await;
    review.must("rev1", id, "reject").await;
    review.must("rev1", id, "withdraw_sign_off").await;
    assert_eq!(review.state(id).await, "approved");

    // The audit API: readers only, filtered, in order.
    let audit = |who: &str, query: &str| {
        review
            .as_(who)
            .get(review.server.url(&format!("/api/v1/audit?{query}")))
            .send()
    };
    assert_eq!(
        audit("rev1", "").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let page: Value = audit("auditor", &format!("subject=patch:{id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "patch.submitted",
            "sign_off.approve",
            "sign_off.approve",
            "patch.state_changed",
            "sign_off.reject",
            "patch.state_changed",
            "sign_off.withdrawn",
            "patch.state_changed",
        ]
    );
    assert_eq!(page["broken"], Value::Null);
    let seqs: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let page: Value = audit("so", "action=user.")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roles_changed: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "user.roles_changed")
        .collect();
    assert_eq!(roles_changed.len(), 2);
    assert_eq!(roles_changed[0]["actor"], "admin");
    assert_eq!(roles_changed[0]["subject"], "user:rm");
    let details: Value =
        serde_json::from_str(roles_changed[0]["details"].as_str().unwrap()).unwrap();
    assert_eq!(details["to"], json!(["reviewer", "release_manager"]));
    assert!(page["events"].as_array().unwrap().iter().any(|e| {
        e["action"] == "user.created" && e["subject"] == "user:dana" && e["actor"] == "admin"
    }));
    // Eight users, dana, and two role changes.
    assert_eq!(page["matched"], CAST.len() as i64 + 3);
    // The pages: audit for readers, admin for admins, policy for everyone.
    for (who, path, status) in [
        ("auditor", "/audit", StatusCode::OK),
        ("rev1", "/audit", StatusCode::FORBIDDEN),
        ("admin", "/admin", StatusCode::OK),
        ("so", "/admin", StatusCode::FORBIDDEN),
        ("author", "/policy", StatusCode::OK),
    ] {
        let response = review
            .as_(who)
            .get(review.server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{who} GET {path}");
    }
    review.server.stop().await;
}

async fn deadlines_order_the_dashboard_and_the_policy_decides_with_the_approvals(backend: Backend) {
    let review = Review::start(backend).await;
    let scheduled = review
        .submit(
            "owner",
            json!({ "title": "scheduled", "cvss_vector": HIGH, "diff": fix(1) }),
        )
        .await;
    let late = review
        .submit(
            "owner",
            json!({ "title": "late incident", "cvss_vector": HIGH, "tier": "incident",
                    "reported_at": "2026-01-01T00:00:00Z", "diff": fix(2) }),
        )
        .await;
    let emergency = review
        .submit(
            "owner",
            json!({ "title": "emergency", "cvss_vector": HIGH, "tier": "emergency", "diff": fix(3) }),
        )
        .await;
    let withdrawn = review
        .submit(
            "owner",
            json!({ "title": "gone", "tier": "incident", "diff": fix(4) }),
        )
        .await;
    review
        .post_action("owner", withdrawn, "withdraw", json!({}))
        .await;
    let list: Value = review.get_json("rev1", "/api/v1/patches").await;
    let order: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    // Most urgent first; closed patches last, without a clock.
    assert_eq!(order, [late, emergency, scheduled, withdrawn]);
    assert!(list[0]["deadline"]["seconds_left"].as_i64().unwrap() < 0);
    assert_eq!(list[0]["deadline"]["due_at"], "2026-01-02T00:00:00.000Z");
    let left = list[1]["deadline"]["seconds_left"].as_i64().unwrap();
    assert!((71 * 3600..=72 * 3600).contains(&left), "{left}");
    assert_eq!(list[3]["deadline"]["seconds_left"], Value::Null);
    let html = review.get_html("rev1", "/").await;
    let row_tag = |id: i64| {
        html.split("<tr")
            .find(|tag| tag.contains(&format!("data-patch=\"{id}\"")))
            .and_then(|tag| tag.split('>').next())
            .unwrap_or_else(|| panic!("no row for patch {id}"))
            .to_owned()
    };
    assert!(
        row_tag(late).contains("overdue"),
        "the late patch's row is flagged"
    );
    assert!(!row_tag(emergency).contains("overdue"));
    assert!(html.contains("overdue by"));

    // Approved under the default policy (two approvals)...
    for who in ["rev1", "rev2"] {
        let sha = review.current_sha(scheduled).await;
        let response = review
            .as_(who)
            .post(
                review
                    .server
                    .url(&format!("/api/v1/patches/{scheduled}/actions/approve")),
            )
            .json(&json!({ "revision_sha256": sha }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(review.state(scheduled).await, "approved");
    // ...and back in review when the server starts under a policy that wants three.
    let strict = graftbench_domain::eligibility::LoadedPolicy {
        policy: graftbench_domain::eligibility::Policy::from_toml("approvals_required = 3")
            .unwrap(),
        path: None,
    };
    let config = graftbench::web::ServerConfig::new(
        graftbench_tests::site_root(),
        std::env::temp_dir(),
        strict,
    );
    // Building the router is the server's start-up: it recomputes states under the policy.
    let _restarted = graftbench::web::router(&config, review.server.db.clone())
        .await
        .expect("router");
    let (facts, _) = review
        .server
        .db
        .review_facts(scheduled)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.stored_state.as_str(), "in_review");
    let last = review
        .server
        .db
        .audit_events()
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("system", "patch.state_changed")
    );
    assert!(
        last.details.contains("\"to\":\"in_review\""),
        "{}",
        last.details
    );
    review.server.stop().await;
}

/// A fix touching `path` (one changed line), varied by `variant`.
fn fix_of(path: &str, variant: usize) -> String {
    format!("--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b{variant}\n")
}

impl Review {
    /// The ids `who` sees at `path` (a dashboard query), in order.
    async fn ids(&self, who: &str, query: &str) -> Vec<i64> {
        let list = self.get_json(who, &format!("/api/v1/patches{query}")).await;
        list.as_array()
            .unwrap_or_else(|| panic!("a list for {query}: {list}"))
            .iter()
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    }

    /// `who`'s "reviewed" marks on the current revision's files: (path, still current).
    async fn marks(&self, id: i64, who: &str) -> Vec<(String, bool)> {
        let page = graftbench_tests::json_of(
            self.as_(who)
                .post(self.server.url("/api/ui/patch"))
                .form(&[("id", id)]),
        )
        .await;
        let mut marks: Vec<(String, bool)> = page["file_marks"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
            .iter()
            .map(|m| {
                (
                    m["path"].as_str().unwrap().to_owned(),
                    m["current"].as_bool().unwrap(),
                )
            })
            .collect();
        marks.sort();
        marks
    }

    async fn ask(&self, who: &str, id: i64, reviewer: &str) -> (StatusCode, String) {
        let response = self
            .as_(who)
            .post(self.server.url(&format!("/api/v1/patches/{id}/reviewers")))
            .json(&json!({ "reviewer": reviewer }))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }
}

async fn the_dashboard_filters_by_text_state_target_author_deadline_and_whose_review_it_needs(
    backend: Backend,
) {
    let mut review = Review::start(backend).await;
    // A registered target (as the target's registration would record it), and a patch
    // filed for it alone.
    let mut tx = review.server.db.begin().await.unwrap();
    let target = graftbench::store::targets::insert_target(
        &mut tx,
        &graftbench::store::targets::NewTarget {
            name: "6.1.0-test".into(),
            build_id: "ab".repeat(20),
            kernel_release: "6.1.0-test".into(),
            origin: "paths".into(),
            package_version: String::new(),
            arch: "x86_64".into(),
            compiler: "gcc".into(),
            vmlinux: "/nonexistent/vmlinux".into(),
            modules_dir: None,
            kbuild_dir: None,
            source_dir: None,
            index_path: "/nonexistent/index".into(),
            counts: Default::default(),
            disk_bytes: 0,
            created_by: "admin".into(),
        },
    )
    .await
    .unwrap()
    .expect("a new target");
    graftbench::store::commit(tx).await.unwrap();
    assert!(target > 0);
    let proc_fix = review
        .submit(
            "owner",
            json!({ "title": "Check the saved command line", "cves": ["CVE-2026-1111"],
                    "cvss_vector": HIGH, "diff": fix_of("fs/proc/cmdline.c", 1) }),
        )
        .await;
    let slab_fix = review
        .submit(
            "owner",
            json!({ "title": "Allocator double free", "cves": ["CVE-2026-2222"],
                    "cvss_vector": HIGH, "tier": "emergency",
                    "targets": ["6.1.0-test"], "diff": fix_of("mm/slab.c", 2) }),
        )
        .await;
    let others = review
        .submit(
            "author",
            json!({ "title": "Another author's draft", "draft": true,
                    "diff": fix_of("net/ipv4/tcp.c", 3) }),
        )
        .await;
    let all = review.ids("rev1", "").await;
    assert_eq!(all.len(), 3, "{all:?}");

    // Text: every word in the title, a CVE id or a path of the current revision, any case.
    assert_eq!(review.ids("rev1", "?q=cmdline").await, [proc_fix]);
    assert_eq!(
        review.ids("rev1", "?q=slab.c").await,
        [slab_fix],
        "a path alone"
    );
    assert_eq!(review.ids("rev1", "?q=cve-2026-2222").await, [slab_fix]);
    assert_eq!(review.ids("rev1", "?q=PROC%201111").await, [proc_fix]);
    assert!(
        review.ids("rev1", "?q=proc%202222").await.is_empty(),
        "all words must match"
    );
    // The current revision's paths: after a revision moves the fix, the old path is gone.
    let moved = review
        .as_("owner")
        .post(
            review
                .server
                .url(&format!("/api/v1/patches/{proc_fix}/revisions")),
        )
        .json(&json!({ "diff": fix_of("fs/proc/version.c", 4) }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        moved.status(),
        StatusCode::CREATED,
        "{}",
        moved.text().await.unwrap()
    );
    assert_eq!(review.ids("rev1", "?q=version.c").await, [proc_fix]);
    assert!(review.ids("rev1", "?q=cmdline.c").await.is_empty());

    // State, author, deadline, target.
    assert_eq!(review.ids("rev1", "?state=draft").await, [others]);
    assert_eq!(review.ids("author", "?author=me").await, [others]);
    let mut mine = review.ids("owner", "?author=me").await;
    mine.sort();
    assert_eq!(mine, [proc_fix, slab_fix]);
    assert_eq!(
        review.ids("rev1", "?due=soon").await,
        [slab_fix],
        "72 hours for emergencies"
    );
    // Filed for the target, or for no target in particular (analysed for every one).
    let mut on_target = review.ids("rev1", "?target=6.1.0-test").await;
    on_target.sort();
    assert_eq!(on_target, [proc_fix, slab_fix, others]);

    // Needs my review: open, mine to approve, no verdict of mine on the current revision.
    review.must("rev1", slab_fix, "reject").await;
    assert_eq!(review.ids("rev1", "?needs=me").await, [proc_fix]);
    let mut rev2 = review.ids("rev2", "?needs=me").await;
    rev2.sort();
    assert_eq!(rev2, [proc_fix, slab_fix]);
    assert!(
        review.ids("owner", "?needs=me").await.is_empty(),
        "an author's own patches never need their review"
    );
    assert!(review.ids("auditor", "?needs=me").await.is_empty());
    assert_eq!(
        review
            .ids("rev1", "?needs=me&state=changes_requested")
            .await,
        Vec::<i64>::new(),
        "filters combine"
    );
    // Asked of rev2: listed first, and flagged.
    let (status, text) = review.ask("rm", slab_fix, "rev2").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let list = review.get_json("rev2", "/api/v1/patches?needs=me").await;
    assert_eq!(list[0]["id"], slab_fix);
    assert_eq!(list[0]["requested_from_me"], true);
    assert_eq!(list[1]["requested_from_me"], false);

    // The page takes the same URL and keeps the filters in its form.
    let html = review.get_html("rev2", "/?needs=me&q=double%20free").await;
    assert!(html.contains(&format!("data-patch=\"{slab_fix}\"")));
    assert!(!html.contains(&format!("data-patch=\"{proc_fix}\"")));
    assert!(
        html.contains("value=\"double free\""),
        "the search stays in its field"
    );
    assert!(html.contains("review requested"));

    // Filters that name nothing are refused with a reason, on the API and the page.
    for (query, says) in [
        ("?state=sleeping", "no state is named `sleeping`"),
        ("?target=nope", "no target is named `nope`"),
        ("?needs=bob", "needs takes only `me`"),
        ("?due=later", "due takes only `soon`"),
    ] {
        let response = review
            .as_("rev1")
            .get(review.server.url(&format!("/api/v1/patches{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
        let page = review
            .as_("rev1")
            .get(review.server.url(&format!("/{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(
            page.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "page {query}"
        );
        assert!(page.text().await.unwrap().contains(says), "page {query}");
    }
    let long = "x".repeat(201);
    let response = review
        .as_("rev1")
        .get(review.server.url(&format!("/api/v1/patches?q={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A database from before the files were recorded: serve records them at start-up.
    sqlx::query("DELETE FROM revision_files")
        .execute(review.server.db.pool())
        .await
        .unwrap();
    assert!(review.ids("rev1", "?q=slab.c").await.is_empty());
    let recorded = graftbench::service::reviewers::record_unrecorded_revisions(&review.server.db)
        .await
        .unwrap();
    assert_eq!(recorded, 4, "three first revisions and one upload");
    assert_eq!(review.ids("rev1", "?q=slab.c").await, [slab_fix]);
    assert_eq!(review.ids("rev1", "?q=version.c").await, [proc_fix]);
    assert_eq!(
        graftbench::service::reviewers::record_unrecorded_revisions(&review.server.db)
            .await
            .unwrap(),
        0,
        "once"
    );
    // Signed out: no list.
    let anonymous = review
        .server
        .anonymous()
        .get(review.server.url("/api/v1/patches?q=proc"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn reviewers_are_asked_for_by_the_author_or_a_release_manager_and_audited(backend: Backend) {
    let mut review = Review::start(backend).await;
    let id = review
        .submit(
            "owner",
            json!({ "title": "ask for me", "cvss_vector": HIGH, "diff": fix_of("x.c", 1) }),
        )
        .await;
    // The form, for those who may ask: the reviewers who did not write the patch.
    let html = review.get_html("owner", &format!("/patches/{id}")).await;
    assert!(html.contains("id=\"ask-reviewer\""));
    assert!(html.contains("value=\"rev1\"") && html.contains("value=\"rev2\""));
    assert!(!html.contains("<option value=\"owner\""), "not its author");
    assert!(!review
        .get_html("rev1", &format!("/patches/{id}"))
        .await
        .contains("id=\"ask-reviewer\""));
    // Who may ask, and whom.
    assert_eq!(
        review.ask("owner", id, "rev1").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(review.ask("rm", id, "rev2").await.0, StatusCode::NO_CONTENT);
    for who in ["author", "rev1", "so", "auditor", "admin"] {
        let (status, text) = review.ask(who, id, "rev2").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {text}");
        assert!(text.contains("author or a release manager"), "{text}");
    }
    for (whom, status, says) in [
        ("rev1", StatusCode::CONFLICT, "asked already"),
        (
            "auditor",
            StatusCode::UNPROCESSABLE_ENTITY,
            "`auditor` is not an enabled reviewer",
        ),
        (
            "owner",
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrote this patch",
        ),
        (
            "nobody",
            StatusCode::UNPROCESSABLE_ENTITY,
            "`nobody` is not an enabled reviewer",
        ),
        ("", StatusCode::UNPROCESSABLE_ENTITY, "name the reviewer"),
    ] {
        let (got, text) = review.ask("owner", id, whom).await;
        assert_eq!(got, status, "{whom}: {text}");
        assert!(text.contains(says), "{whom}: {text}");
    }
    let missing = review.ask("owner", 9999, "rev1").await;
    assert_eq!(missing.0, StatusCode::NOT_FOUND, "{}", missing.1);
    // The page lists them, with the form for those who may ask.
    let page = review.patch(id).await;
    let asked: Vec<&str> = page["review"]["requested"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["username"].as_str().unwrap())
        .collect();
    assert_eq!(asked, ["rev1", "rev2"]);
    // Nobody left to ask: no form.
    let html = review.get_html("owner", &format!("/patches/{id}")).await;
    assert!(!html.contains("id=\"ask-reviewer\""));
    // Stop asking: once.
    let cancel = |who: &'static str| {
        review
            .as_(who)
            .delete(
                review
                    .server
                    .url(&format!("/api/v1/patches/{id}/reviewers/rev1")),
            )
            .send()
    };
    assert_eq!(
        cancel("rev2").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        cancel("owner").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        cancel("owner").await.unwrap().status(),
        StatusCode::CONFLICT
    );
    // A reviewer disabled since can still be taken off the list.
    let disabled = review
        .as_("admin")
        .post(review.server.url("/api/v1/users/rev2/disable"))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), StatusCode::NO_CONTENT);
    let taken_back = review
        .as_("owner")
        .delete(
            review
                .server
                .url(&format!("/api/v1/patches/{id}/reviewers/rev2")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(taken_back.status(), StatusCode::NO_CONTENT);
    // The form posts back to the page, refusals in the flash message.
    let form = review
        .as_("owner")
        .post(review.server.url(&format!("/patches/{id}/reviewers")))
        .form(&[("reviewer", "auditor"), ("verb", "ask")])
        .send()
        .await
        .unwrap();
    assert!(form.status().is_redirection());
    let html = review.get_html("owner", &format!("/patches/{id}")).await;
    assert!(
        html.contains("is not an enabled reviewer"),
        "the refusal is shown"
    );
    // A withdrawn patch takes no requests.
    review.must("owner", id, "withdraw").await;
    assert_eq!(
        review.ask("owner", id, "rev1").await.0,
        StatusCode::CONFLICT
    );
    // Every change is in the trail.
    let trail = review
        .get_json(
            "auditor",
            &format!("/api/v1/audit?subject=patch:{id}&action=review."),
        )
        .await;
    let events: Vec<(String, String)> = trail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let details: Value = serde_json::from_str(e["details"].as_str().unwrap()).unwrap();
            (
                e["action"].as_str().unwrap().to_owned(),
                details["reviewer"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("review.requested".to_owned(), "rev1".to_owned()),
            ("review.requested".to_owned(), "rev2".to_owned()),
            ("review.request_cancelled".to_owned(), "rev1".to_owned()),
            ("review.request_cancelled".to_owned(), "rev2".to_owned()),
        ]
    );
}

async fn reviewed_marks_are_per_user_and_reset_when_a_revision_changes_the_file(backend: Backend) {
    let review = Review::start(backend).await;
    let two_files =
        |variant: usize| format!("{}{}", fix_of("fs/a.c", 1), fix_of("fs/b.c", variant));
    let id = review
        .submit(
            "owner",
            json!({ "title": "two files", "cvss_vector": HIGH, "diff": two_files(1) }),
        )
        .await;
    let mark = |who: &'static str, path: &'static str, reviewed: bool| {
        review
            .as_(who)
            .post(review.server.url(&format!("/api/v1/patches/{id}/reviewed")))
            .json(&json!({ "path": path, "reviewed": reviewed }))
            .send()
    };
    assert_eq!(
        mark("rev1", "fs/a.c", true).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mark("rev1", "fs/b.c", true).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mark("rev2", "fs/a.c", true).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        review.marks(id, "rev1").await,
        [("fs/a.c".to_owned(), true), ("fs/b.c".to_owned(), true)]
    );
    assert_eq!(
        review.marks(id, "rev2").await,
        [("fs/a.c".to_owned(), true)]
    );
    assert!(
        review.marks(id, "so").await.is_empty(),
        "marks are each reader's own"
    );
    // A file the revision does not change, or a patch that does not exist.
    let wrong = mark("rev1", "fs/c.c", true).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("does not change `fs/c.c`"));
    let none = review
        .as_("rev1")
        .post(review.server.url("/api/v1/patches/9999/reviewed"))
        .json(&json!({ "path": "fs/a.c", "reviewed": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    // A revision that changes fs/b.c only: fs/a.c stays reviewed, fs/b.c is "changed".
    review.upload("owner", id, &two_files(2)).await;
    assert_eq!(
        review.marks(id, "rev1").await,
        [("fs/a.c".to_owned(), true), ("fs/b.c".to_owned(), false)]
    );
    // Marking again holds for the new change; unmarking clears it.
    assert_eq!(
        mark("rev1", "fs/b.c", true).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        mark("rev1", "fs/a.c", false).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        review.marks(id, "rev1").await,
        [("fs/b.c".to_owned(), true)]
    );
    // The page's form posts back to the file.
    let form = review
        .as_("rev2")
        .post(review.server.url(&format!("/patches/{id}/reviewed")))
        .form(&[("path", "fs/b.c"), ("reviewed", "1"), ("anchor", "file-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        form.headers()["location"],
        format!("/patches/{id}#file-1").as_str()
    );
    let sneaky = review
        .as_("rev2")
        .post(review.server.url(&format!("/patches/{id}/reviewed")))
        .form(&[
            ("path", "fs/b.c"),
            ("reviewed", "1"),
            ("anchor", "file-1\r\nX: y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        sneaky.headers()["location"],
        format!("/patches/{id}").as_str()
    );
    let html = review.get_html("rev2", &format!("/patches/{id}")).await;
    assert_eq!(
        html.matches("✓ Reviewed").count(),
        2,
        "fs/a.c from the first revision, fs/b.c as it is now"
    );
}

/// The `comment.added` events of the trail, oldest first, with the action before each.
async fn comments_audited(review: &Review) -> Vec<(String, Value)> {
    let events = review.server.db.audit_events().await.unwrap();
    events
        .windows(2)
        .filter(|pair| pair[1].action == "comment.added")
        .map(|pair| {
            (
                pair[0].action.clone(),
                serde_json::from_str(&pair[1].details).unwrap(),
            )
        })
        .collect()
}

async fn drafts_are_seen_by_their_author_only_until_published_with_a_verdict_or_alone(
    backend: Backend,
) {
    let mut review = Review::start(backend).await;
    let id = review.patch_in("in_review").await;
    let comment = |who: &str, body: Value| {
        review
            .as_(who)
            .post(review.server.url(&format!("/api/v1/patches/{id}/comments")))
            .json(&body)
            .send()
    };
    let on_line = |line: i64, body: &str, draft: bool| {
        json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": line,
                "body": body, "draft": draft })
    };
    // rev2 starts a thread; rev1 keeps a new thread and a reply to it as drafts.
    let response = comment("rev2", on_line(11, "published by rev2", false))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let thread = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut drafts = Vec::new();
    for body in [
        on_line(10, "a draft thread of rev1", true),
        json!({ "thread": thread, "body": "a draft reply of rev1", "draft": true }),
    ] {
        let response = comment("rev1", body).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let answer = response.json::<Value>().await.unwrap();
        assert!(
            answer.get("id").is_none(),
            "a draft is no comment: {answer}"
        );
        drafts.push(answer["draft"].as_i64().expect("the draft's id"));
    }
    // Refused: a draft where the diff shows no line, a pitfall mark as a draft, a draft
    // by a role that may not comment.
    for (who, body, status) in [
        (
            "rev1",
            on_line(99, "nowhere", true),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "rev1",
            json!({ "revision": 1, "path": "fs/proc/cmdline.c", "side": "new", "line": 10,
                    "body": "considered", "pitfall": "header", "draft": true }),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("auditor", on_line(10, "x", true), StatusCode::FORBIDDEN),
    ] {
        let response = comment(who, body.clone()).await.unwrap();
        assert_eq!(response.status(), status, "{who} {body}");
    }
    // Only rev1 sees them: not in anyone else's page data or HTML, not in the trail.
    let mine = review
        .get_json("rev1", &format!("/api/v1/patches/{id}"))
        .await;
    assert_eq!(mine["review"]["drafts"].as_array().unwrap().len(), 2);
    assert_eq!(mine["review"]["drafts"][1]["thread"], thread);
    for who in ["rev2", "owner", "auditor"] {
        let theirs = review.get_json(who, &format!("/api/v1/patches/{id}")).await;
        assert_eq!(theirs["review"]["drafts"], json!([]), "{who}");
        assert_eq!(theirs["review"]["threads"].as_array().unwrap().len(), 1);
        assert_eq!(
            theirs["review"]["threads"][0]["comments"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let html = review.get_html(who, &format!("/patches/{id}")).await;
        assert!(!html.contains("of rev1"), "{who} sees a draft");
    }
    let html = review.get_html("rev1", &format!("/patches/{id}")).await;
    for draft in &drafts {
        assert_eq!(
            html.matches(&format!("id=\"draft-{draft}\"")).count(),
            1,
            "draft {draft} once on its author's page"
        );
    }
    assert!(html.contains("a draft thread of rev1") && html.contains("id=\"drafts\""));
    assert_eq!(comments_audited(&review).await.len(), 1);

    // Discarding: only one's own, once.
    let response = comment("rev1", on_line(10, "to be discarded", true))
        .await
        .unwrap();
    let discarded = response.json::<Value>().await.unwrap()["draft"]
        .as_i64()
        .unwrap();
    let discard = |who: &str, draft: i64| {
        review
            .as_(who)
            .delete(
                review
                    .server
                    .url(&format!("/api/v1/patches/{id}/drafts/{draft}")),
            )
            .send()
    };
    assert_eq!(
        discard("rev2", discarded).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        discard("rev1", discarded).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        discard("rev1", discarded).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // Approving publishes rev1's drafts in the same transaction, after the verdict.
    let sha = review.current_sha(id).await;
    let response = review
        .post_action("rev1", id, "approve", json!({ "revision_sha256": sha }))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let outcome = response.json::<Value>().await.unwrap();
    assert_eq!(
        outcome["published"].as_array().unwrap().len(),
        2,
        "{outcome}"
    );
    let page = review.patch(id).await;
    assert_eq!(page["review"]["drafts"], json!([]));
    let threads = page["review"]["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2);
    let bodies: BTreeSet<String> = threads
        .iter()
        .flat_map(|t| t["comments"].as_array().unwrap())
        .map(|c| c["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        bodies,
        BTreeSet::from(
            [
                "published by rev2",
                "a draft thread of rev1",
                "a draft reply of rev1"
            ]
            .map(String::from)
        )
    );
    let audited = comments_audited(&review).await;
    assert_eq!(audited.len(), 3);
    assert_eq!(audited[1].0, "sign_off.approve");
    for (_, details) in &audited[1..] {
        assert_eq!(details["published_with"], "approve");
        assert!(drafts.contains(&details["draft"].as_i64().unwrap()));
    }
    assert_eq!(audited[2].1["thread"], thread);

    // Published on its own, without a verdict; with nothing left, 409.
    let response = comment("rev2", on_line(10, "a later draft of rev2", true))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let publish = |who: &str| {
        review
            .as_(who)
            .post(
                review
                    .server
                    .url(&format!("/api/v1/patches/{id}/drafts/publish")),
            )
            .send()
    };
    let response = publish("rev2").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["published"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        publish("rev2").await.unwrap().status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        publish("auditor").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let audited = comments_audited(&review).await;
    assert_eq!(audited.len(), 4);
    assert_eq!(audited[3].1["published_with"], Value::Null);
    assert!(review.server.db.verify_audit().await.unwrap().is_ok());
    review.server.stop().await;
}

/// A diff of `fs/x.c` (whose line N is `int lN = N;`, original blob `blob`) with one
/// hunk per (first line, last line) in `hunks`, each replacing its middle line by two.
pub(crate) fn numbered_fix(blob: &str, hunks: &[(u32, u32)]) -> String {
    let mut text = format!(
        "diff --git a/fs/x.c b/fs/x.c\nindex {blob}..1234567 100644\n--- a/fs/x.c\n+++ b/fs/x.c\n"
    );
    // Each hunk adds a line: the next starts one further on the new side.
    for (growth, &(first, last)) in (0u32..).zip(hunks) {
        let lines = last - first + 1;
        text += &format!("@@ -{first},{lines} +{},{} @@\n", first + growth, lines + 1);
        for n in first..=last {
            if n == first + lines / 2 {
                text += &format!("-int l{n} = {n};\n+long l{n} = {n};\n+long m{n} = {n};\n");
            } else {
                text += &format!(" int l{n} = {n};\n");
            }
        }
    }
    text
}

async fn without_a_source_tree_the_lines_around_hunks_come_from_revisions_of_the_same_original(
    backend: Backend,
) {
    let review = Review::start(backend).await;
    // Revision 1 shows lines 12-18 and 26-32; revision 2 changes 19-25 of the same
    // original; revision 3 patches another version of the file (its blob differs).
    let id = review
        .submit(
            "owner",
            json!({ "title": "moving hunks", "cvss_vector": HIGH,
                    "diff": numbered_fix("abcdef0", &[(12, 18), (26, 32)]) }),
        )
        .await;
    for diff in [
        numbered_fix("abcdef0", &[(19, 25)]),
        numbered_fix("9999999", &[(5, 11), (19, 25)]),
    ] {
        review.upload("owner", id, &diff).await;
    }
    let gaps = |revision: i64| {
        let request = review
            .as_("rev1")
            .post(review.server.url("/api/ui/patch"))
            .form(&[("id", id), ("revision", revision)]);
        async move {
            let page = graftbench_tests::json_of(request).await;
            let mut gaps: Vec<(u64, u64, bool, u64)> = page["known_around"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"))
                .iter()
                .map(|g| {
                    (
                        g["file"].as_u64().unwrap(),
                        g["hunk"].as_u64().unwrap(),
                        g["below"].as_bool().unwrap(),
                        g["lines"].as_u64().unwrap(),
                    )
                })
                .collect();
            gaps.sort_unstable();
            gaps
        }
    };
    // Revision 2: revision 1 shows the 7 lines above its hunk and the 7 below; revision
    // 3's lines 5-11 would join those above, but it patches another original.
    assert_eq!(gaps(2).await, [(0, 0, false, 7), (0, 0, true, 7)]);
    // Revision 1: revision 2 fills the gap between its hunks exactly, from the second
    // hunk up. Revision 3: nothing of its original is known.
    assert_eq!(gaps(1).await, [(0, 1, false, 7)]);
    assert!(gaps(3).await.is_empty());
    // The page offers them (before any script runs).
    let html = review
        .get_ok("rev1", &format!("/patches/{id}?rev=2"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("↑ Show 7 more lines"), "{html}");
    assert!(html.contains("↓ Show 7 more lines"));
    let html = review
        .get_ok("rev1", &format!("/patches/{id}?rev=3"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("more line"));
    // The lines, with the diff's numbers on both sides, nearest the hunk first.
    let reading = &review;
    let context = |revision: i64, path: &'static str, hunk: usize, below: bool, count: usize| {
        let ask = graftbench_tests::ContextAsk {
            patch: id,
            revision,
            path,
            hunk,
            below,
            count,
            target: None,
        };
        async move {
            let (status, answer) =
                graftbench_tests::context_lines(&reading.server, reading.as_("rev1"), ask).await;
            (status, graftbench_tests::numbered_lines(&answer))
        }
    };
    let line = |old: u64, new: u64| (old, new, format!("int l{old} = {old};"));
    let (status, above) = context(2, "fs/x.c", 0, false, 20).await;
    assert_eq!(status, 200);
    assert_eq!(above, (12..=18).map(|n| line(n, n)).collect::<Vec<_>>());
    assert_eq!(
        context(2, "fs/x.c", 0, false, 3).await.1,
        [line(16, 16), line(17, 17), line(18, 18)]
    );
    // Below the hunk the new side is one line further on (it adds one).
    assert_eq!(
        context(2, "fs/x.c", 0, true, 500).await.1,
        (26..=32).map(|n| line(n, n + 1)).collect::<Vec<_>>()
    );
    assert_eq!(
        context(1, "fs/x.c", 1, false, 20).await.1,
        (19..=25).map(|n| line(n, n + 1)).collect::<Vec<_>>()
    );
    assert_eq!(context(3, "fs/x.c", 0, false, 20).await, (200, vec![]));
    // A hunk, file or revision that is not there.
    for (revision, path, hunk) in [(2, "fs/x.c", 1), (2, "fs/y.c", 0), (9, "fs/x.c", 0)] {
        assert_eq!(
            context(revision, path, hunk, false, 20).await.0,
            404,
            "{revision} {path} {hunk}"
        );
    }
    review.server.stop().await;
}

/// A view of the patch page reads each thing it shows once: the impact panel's data once
/// (a resource made inside the page's `Suspend` was loaded three times per view, once per
/// walk of the page for pending loads), and sixteen statements in all.
async fn a_patch_page_view_reads_what_it_shows_once(backend: Backend) {
    let statements = graftbench_tests::StatementLog::install();
    let review = Review::start(backend).await;
    let id = review
        .submit(
            "owner",
            json!({ "title": "counted", "cvss_vector": HIGH, "diff": fix(1) }),
        )
        .await;
    let view = || async {
        let response = review
            .as_("owner")
            .get(review.server.url(&format!("/patches/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    };
    view().await; // the first view may wait for the revision's rendering
    statements.take();
    let page = view().await;
    // Background work (the job queue's polling, session expiry) is not the view's, nor is
    // setting up a connection the pool opens meanwhile.
    let read: Vec<String> = statements
        .take()
        .into_iter()
        .filter(|s| {
            !s.starts_with("UPDATE jobs")
                && !s.starts_with("PRAGMA")
                && !s.starts_with("SET ")
                && !s.to_lowercase().starts_with("delete from tower_sessions")
        })
        .collect();
    // The impact panel is in the page, loaded on the server...
    assert!(page.contains("id=\"no-graph\""), "{page}");
    // ... from one read of its revision, and one of the registrations.
    let counted = |needle: &str| read.iter().filter(|s| s.contains(needle)).count();
    assert_eq!(
        counted("SELECT number, diff_sha256 FROM revisions"),
        1,
        "the impact panel's revision: {read:#?}"
    );
    assert_eq!(counted("FROM comments c"), 1, "the threads: {read:#?}");
    assert_eq!(
        counted("ORDER BY id DESC LIMIT"),
        1,
        "the registrations: {read:#?}"
    );
    assert!(read.len() <= 17, "{} statements: {read:#?}", read.len());
}
