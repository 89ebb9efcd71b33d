//! Kernel targets and analyses through the HTTP API on SQLite and PostgreSQL: a target
//! registered from the analyzer's gcc-built fixtures, fixes analysed against it as jobs,
//! registrations refused with the reason and nothing left behind, and a worker process
//! killed (SIGKILL) in the middle of an index job whose job a second worker completes
//! exactly once.

use graftbench::store::jobs::JobState;
use graftbench_app::model::Role;
use graftbench_tests::{graftbench_binary, on_both_databases, Backend, TestServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[path = "../../../analyzer/tests/common/mod.rs"]
pub(crate) mod fixtures;

on_both_databases!(
    a_fixture_target_is_registered_and_each_revision_is_analysed_against_it,
    bad_registrations_are_refused_with_the_reason_and_leave_nothing_behind,
    a_worker_killed_in_the_middle_of_an_index_job_is_replaced_and_the_job_completes_once,
    a_job_cancelled_in_the_middle_of_its_index_phase_stops_its_work_and_leaves_nothing,
    a_hunk_that_does_not_apply_to_one_of_two_targets_shows_in_the_matrix_and_its_graph,
    a_reviewer_marks_a_pitfall_considered_on_its_line_and_that_is_audited,
);

/// A fix of the fixtures' `req_len()` (clones.c:12), which gcc turned into an IPA-SRA
/// clone: the live patch replaces its caller `use_req`.
const CLONES_FIX: &str =
    "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
     @@ -12,1 +12,1 @@\n-\treturn r->len * 3 + 1;\n+\treturn r->len * 3 + 2;\n";

/// A fix of two fixture files against the gcc-built fixture target: `req_len()`, which
/// gcc made an IPA-SRA clone of (its caller is replaced), and the header inline `bump()`
/// (its callers, one through the nested `bump_pair()`).
pub(crate) const CLONE_AND_INLINE_FIX: &str = concat!(
    "--- a/analyzer/tests/fixtures/clones.c\n",
    "+++ b/analyzer/tests/fixtures/clones.c\n",
    "@@ -11,3 +11,3 @@ static noinline int req_len(struct req *r)\n",
    " {\n",
    "-\treturn r->len * 3 + 1;\n",
    "+\treturn r->len * 3 + 2;\n",
    " }\n",
    "--- a/analyzer/tests/fixtures/inlines.h\n",
    "+++ b/analyzer/tests/fixtures/inlines.h\n",
    "@@ -7,3 +7,3 @@ static inline int bump(int v)\n",
    " {\n",
    "-\treturn v * 2 + 1;\n",
    "+\treturn v * 2 + 2;\n",
    " }\n",
);

/// A server whose target root holds the fixtures' vmlinux (with debug information), a
/// stripped copy and a file that is not ELF.
pub(crate) async fn server_with_fixture_root(backend: Backend) -> (TestServer, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("target root");
    let build = fixtures::Build::compile(5);
    std::fs::write(root.path().join("vmlinux"), build.vmlinux()).unwrap();
    let stripped = root.path().join("vmlinux.stripped");
    let status = std::process::Command::new("objcopy")
        .arg("--strip-debug")
        .arg(root.path().join("vmlinux"))
        .arg(&stripped)
        .status()
        .expect("objcopy");
    assert!(status.success());
    std::fs::write(root.path().join("notes.txt"), "not a kernel").unwrap();
    // Kernel headers of another release than the one registered with them.
    let generated = root.path().join("kbuild-other/include/generated");
    std::fs::create_dir_all(&generated).unwrap();
    std::fs::write(
        generated.join("utsrelease.h"),
        "#define UTS_RELEASE \"6.1.0-other\"\n",
    )
    .unwrap();
    let root_path = root.path().to_owned();
    let server = TestServer::start_configured(backend, move |config| {
        config.target_root = Some(root_path);
    })
    .await;
    (server, root)
}

/// Waits (up to 60 s) for job `id` to finish; its JSON.
pub(crate) async fn finished_job(client: &reqwest::Client, server: &TestServer, id: i64) -> Value {
    for _ in 0..600 {
        let body: Value = get_json(client, server, &format!("/api/v1/jobs/{id}")).await;
        let state = body["job"]["state"].as_str().unwrap_or_default().to_owned();
        if ["done", "failed", "cancelled"].contains(&state.as_str()) {
            return body["job"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not finish");
}

/// The patch's analyses once every revision up to `revision` has one per target.
async fn analyses(
    client: &reqwest::Client,
    server: &TestServer,
    patch: i64,
    revision: i64,
) -> Value {
    for _ in 0..600 {
        let body: Value =
            get_json(client, server, &format!("/api/v1/patches/{patch}/analyses")).await;
        let newest = &body["revisions"][0];
        if newest["revision"] == revision && !newest["analyses"].as_array().unwrap().is_empty() {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("revision {revision} of patch {patch} was not analysed");
}

pub(crate) async fn register_fixture(server: &TestServer, admin: &reqwest::Client) -> i64 {
    let response = admin
        .post(server.url("/api/v1/targets"))
        .json(
            &json!({ "vmlinux": "vmlinux", "name": "fixture", "kernel_release": "6.1.0-fixture" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "fixture");
    body["job"].as_i64().unwrap()
}

/// `GET path` as `client`, as JSON.
async fn get_json(client: &reqwest::Client, server: &TestServer, path: impl AsRef<str>) -> Value {
    client
        .get(server.url(path.as_ref()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn events(server: &TestServer, action: &str) -> usize {
    server
        .db
        .audit_events()
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

async fn a_fixture_target_is_registered_and_each_revision_is_analysed_against_it(backend: Backend) {
    let (server, _root) = server_with_fixture_root(backend).await;
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    let admin = server.signed_in("ada").await;
    let author = server.signed_in("alice").await;
    let _workers = server.start_workers(1).await;

    let job = register_fixture(&server, &admin).await;
    let job = finished_job(&admin, &server, job).await;
    assert_eq!(job["state"], "done", "{job}");
    let targets: Value = get_json(&admin, &server, "/api/v1/targets").await;
    let target = &targets["targets"][0];
    assert_eq!(target["name"], "fixture");
    assert_eq!(target["kernel_release"], "6.1.0-fixture");
    assert_eq!(target["arch"], "x86_64");
    assert!(
        target["compiler"].as_str().unwrap().starts_with("GNU C"),
        "{target}"
    );
    assert!(target["functions"].as_i64().unwrap() > 10, "{target}");
    assert!(target["clones"].as_i64().unwrap() >= 1, "{target}");
    let build_id = target["build_id"].as_str().unwrap();
    let target_dir = server.data_dir.join("targets").join(build_id);
    assert!(target_dir.join("index.gbindex").is_file());
    assert_eq!(events(&server, "target.added").await, 1);

    // The author's fix is analysed against the target, as a job.
    let response = author
        .post(server.url("/api/v1/patches"))
        .json(&json!({
            "title": "req_len: count the terminator",
            "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "diff": CLONES_FIX,
            "targets": ["fixture"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let patch = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let body = analyses(&author, &server, patch, 1).await;
    let analysis = &body["revisions"][0]["analyses"][0];
    assert_eq!(analysis["target"], "fixture");
    assert_eq!(analysis["outcome"], "analysed");
    assert_eq!(analysis["functions_to_replace"], 1);
    assert_eq!(analysis["build_id"], build_id);
    let replaced: Vec<&str> = analysis["report"]["replace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(replaced, ["use_req"]);
    let stored = server.db.patch(patch).await.unwrap().unwrap();
    let view: Value = get_json(&author, &server, &format!("/api/v1/patches/{patch}")).await;
    let reasons = view["review"]["eligibility"]["reasons"].to_string();
    assert!(
        reasons.contains("1 function(s) to replace"),
        "eligibility reads the analysis: {reasons} ({stored:?})"
    );
    assert_eq!(events(&server, "analysis.recorded").await, 1);

    // A new revision that changes no code of the build says so plainly.
    let other = CLONES_FIX.replace("clones.c", "not_built.c");
    let response = author
        .post(server.url(&format!("/api/v1/patches/{patch}/revisions")))
        .json(&json!({ "diff": other }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body = analyses(&author, &server, patch, 2).await;
    let analysis = &body["revisions"][0]["analyses"][0];
    assert_eq!(analysis["outcome"], "no_code", "{analysis}");
    assert!(analysis["summary"]
        .as_str()
        .unwrap()
        .contains("not_built.c"));
    assert_eq!(
        body["revisions"][1]["analyses"][0]["functions_to_replace"],
        1
    );
    assert_eq!(events(&server, "analysis.recorded").await, 2);
    let view: Value = get_json(&author, &server, &format!("/api/v1/patches/{patch}")).await;
    assert!(view["review"]["eligibility"]["reasons"]
        .to_string()
        .contains("scope not known"));

    // A revision one of whose hunks does not match the build cannot be made eligible
    // by it: the scope it reports is partial, and eligibility says so.
    let mismatched =
        CLONES_FIX.replace("@@ -12,1 +12,1 @@", "@@ -12,1 +12,1 @@ int validate(int v)");
    let response = author
        .post(server.url(&format!("/api/v1/patches/{patch}/revisions")))
        .json(&json!({ "diff": mismatched }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body = analyses(&author, &server, patch, 3).await;
    let analysis = &body["revisions"][0]["analyses"][0];
    assert_eq!(analysis["outcome"], "not_applicable", "{analysis}");
    let view: Value = get_json(&author, &server, &format!("/api/v1/patches/{patch}")).await;
    let eligibility = &view["review"]["eligibility"];
    assert_eq!(eligibility["eligible"], false, "{eligibility}");
    assert!(
        eligibility["reasons"]
            .to_string()
            .contains("no complete live patch"),
        "{eligibility}"
    );

    // The change's evidence bundle carries each revision's analyses, and verifies.
    graftbench::service::checkpoints::load_or_create_key(&server.data_dir).unwrap();
    let bundle = admin
        .get(server.url(&format!("/api/v1/patches/{patch}/evidence")))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);
    let bytes = bundle.bytes().await.unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    let vkey = admin
        .get(server.url("/api/v1/audit/key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let outcome = graftbench::service::evidence::verify::verify(file.path(), vkey.trim()).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.problems);
    let member = format!(
        "patches/{patch}/analyses/r1-fixture-v{}.json",
        analyzer::impact::REPORT_VERSION
    );
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(member.as_bytes()), "the bundle has {member}");
    assert!(
        contains(b"\"vmlinux:use_req\""),
        "patch.json lists the replacement"
    );
    assert!(contains(b"What the live patch replaces, per kernel build"));

    // An analysis that cannot be made (the index went away) fails after its retries,
    // and the patch is not eligible while it stands so.
    let index = std::path::PathBuf::from(target["index_path"].as_str().unwrap());
    let aside = index.with_extension("aside");
    std::fs::rename(&index, &aside).unwrap();
    let response = author
        .post(server.url("/api/v1/patches"))
        .json(&json!({
            "title": "unanalysable",
            "cvss_vector": "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
            "diff": CLONES_FIX.replace("+ 2;", "+ 6;"),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let failing = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut failed = false;
    for _ in 0..300 {
        let body = get_json(
            &author,
            &server,
            format!("/api/v1/patches/{failing}/analyses"),
        )
        .await;
        if body["revisions"][0]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["state"] == "failed")
        {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed, "the analysis job failed after its retries");
    let view = get_json(&author, &server, format!("/api/v1/patches/{failing}")).await;
    let eligibility = &view["review"]["eligibility"];
    assert_eq!(eligibility["eligible"], false, "{eligibility}");
    assert!(
        eligibility["reasons"]
            .to_string()
            .contains("an analysis failed"),
        "{eligibility}"
    );
    std::fs::rename(&aside, &index).unwrap();

    // The form's fields (multipart) name targets too; an unknown one is refused.
    for (named, status) in [("fixture", 201), ("no-such-target", 422)] {
        let form = reqwest::multipart::Form::new()
            .text("title", "by the form")
            .text("diff", CLONES_FIX.replace("+ 2;", "+ 4;"))
            .text("targets", named);
        let response = author
            .post(server.url("/api/v1/patches"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{named}");
    }

    // Retired: kept, analysed for no more; a patch cannot name it.
    let response = admin
        .post(server.url(&format!("/api/v1/targets/{}/retire", target["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = author
        .post(server.url("/api/v1/patches"))
        .json(&json!({ "title": "again", "diff": CLONES_FIX, "targets": ["fixture"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("retired"));
    assert!(server.db.verify_audit().await.unwrap().is_ok());
    assert!(server.db.unexplained_rows().await.unwrap().is_empty());
    server.stop().await;
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn bad_registrations_are_refused_with_the_reason_and_leave_nothing_behind(backend: Backend) {
    let (server, root) = server_with_fixture_root(backend).await;
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    let admin = server.signed_in("ada").await;
    let author = server.signed_in("alice").await;
    let _workers = server.start_workers(1).await;

    let refused = |body: Value, status: u16, says: &'static str| {
        let admin = admin.clone();
        let url = server.url("/api/v1/targets");
        async move {
            let response = admin.post(url).json(&body).send().await.unwrap();
            let code = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert_eq!(code, status, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
            text
        }
    };
    refused(
        json!({ "release": "6.1.0-56-amd64;rm -rf /" }),
        422,
        "is not a Debian kernel release",
    )
    .await;
    refused(
        json!({ "release": "--allow-unauthenticated" }),
        422,
        "is not a Debian kernel release",
    )
    .await;
    refused(
        json!({ "release": "6.1.0-999-amd64" }),
        404,
        "has no linux-image-6.1.0-999-amd64-dbg",
    )
    .await;
    refused(json!({}), 422, "give a release").await;
    refused(json!({ "vmlinux": "notes.txt" }), 422, "is not an ELF file").await;
    refused(
        json!({ "vmlinux": "vmlinux.stripped", "kernel_release": "x" }),
        422,
        "no debug information",
    )
    .await;
    refused(json!({ "vmlinux": "vmlinux" }), 422, "give kernel_release").await;
    refused(
        json!({ "vmlinux": "vmlinux", "kernel_release": "6.1.0-fixture", "kbuild_dir": "kbuild-other" }),
        422,
        "kbuild_dir: the headers are for release 6.1.0-other but the target is 6.1.0-fixture",
    )
    .await;
    // Outside the root, whether the file exists or not: the same answer.
    let outside_existing = refused(
        json!({ "vmlinux": "/etc/passwd" }),
        422,
        "only paths under the target root",
    )
    .await;
    let outside_missing = refused(
        json!({ "vmlinux": "/etc/nothing-here" }),
        422,
        "only paths under the target root",
    )
    .await;
    assert_eq!(outside_existing, outside_missing);
    refused(
        json!({ "vmlinux": "../../../etc/passwd" }),
        422,
        "only paths under the target root",
    )
    .await;
    refused(
        json!({ "vmlinux": "vmlinux", "kernel_release": "x", "name": "<b>x</b>" }),
        422,
        "is not a target name",
    )
    .await;
    refused(
        json!({ "vmlinux": "vmlinux", "kernel_release": "x", "bogus": 1 }),
        422,
        "unknown field",
    )
    .await;
    let response = author
        .post(server.url("/api/v1/targets"))
        .json(&json!({ "vmlinux": "vmlinux", "kernel_release": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // Accepted, then the image goes before the worker reads it: the job fails after its
    // retries with the reason, and leaves no row and no files.
    let moved = root.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    std::fs::copy(root.path().join("vmlinux"), moved.join("vmlinux")).unwrap();
    let response = admin
        .post(server.url("/api/v1/targets"))
        .json(
            &json!({ "vmlinux": "moved/vmlinux", "kernel_release": "6.1.0-gone", "name": "gone" }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let job = response.json::<Value>().await.unwrap()["job"]
        .as_i64()
        .unwrap();
    std::fs::remove_file(moved.join("vmlinux")).unwrap();
    let job = finished_job(&admin, &server, job).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["attempts"], 3);
    // The error names the file by the target root, not by where it is on the server.
    let error = job["error"].as_str().unwrap();
    assert!(error.contains("$TARGET_ROOT/moved/vmlinux"), "{job}");
    assert!(!error.contains(&*root.path().to_string_lossy()), "{job}");

    assert!(server.db.targets().await.unwrap().is_empty());
    assert_eq!(
        listing(&server.data_dir.join("targets")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(events(&server, "target.added").await, 0);
    server.stop().await;
}

fn worker_process(server: &TestServer, hold: Option<&str>) -> std::process::Child {
    let mut command = std::process::Command::new(graftbench_binary());
    command
        .args(["worker", "--workers", "1", "--job-lease", "2"])
        .arg("--target-root")
        .arg(server.target_root.as_ref().unwrap())
        .arg("--data-dir")
        .arg(&server.data_dir)
        .env("DATABASE_URL", &server.database_url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match hold {
        Some(phase) => command.env("GRAFTBENCH_TEST_HOLD_PHASE", phase),
        None => command.env_remove("GRAFTBENCH_TEST_HOLD_PHASE"),
    };
    command.spawn().expect("start graftbench worker")
}

async fn a_worker_killed_in_the_middle_of_an_index_job_is_replaced_and_the_job_completes_once(
    backend: Backend,
) {
    let (server, _root) = server_with_fixture_root(backend).await;
    server.add_user("ada", &[Role::Admin]).await;
    let admin = server.signed_in("ada").await;
    let job = register_fixture(&server, &admin).await;

    // The first worker holds the job in its index phase (a hook only tests have)...
    let mut first = worker_process(&server, Some("indexing"));
    let mut held = None;
    for _ in 0..300 {
        let current = server.db.job(job).await.unwrap().unwrap();
        assert_ne!(
            current.state,
            JobState::Done,
            "the job finished unheld: is the binary built with the test-hooks feature?"
        );
        if current.state == JobState::Running && current.phase == "indexing" {
            held = Some(current);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let held = held.expect("the worker reached the index phase");
    assert_eq!(held.attempts, 1);
    // ... and is killed there, without a chance to say anything.
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let partial = server
        .data_dir
        .join("targets")
        .join(format!(".partial-{job}-1"));
    assert!(partial.is_dir(), "the killed worker left its files");

    // A second worker takes the job once the lease runs out, and completes it.
    let mut second = worker_process(&server, None);
    let done = {
        let mut done = None;
        for _ in 0..600 {
            let current = server.db.job(job).await.unwrap().unwrap();
            if matches!(current.state, JobState::Done | JobState::Failed) {
                done = Some(current);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        done.expect("the second worker finished the job")
    };
    second.kill().expect("stop the second worker");
    second.wait().expect("reaped");
    assert_eq!(done.state, JobState::Done, "{done:?}");
    assert_eq!(done.attempts, 2);
    assert_ne!(done.worker, held.worker);
    let targets = server.db.targets().await.unwrap();
    assert_eq!(targets.len(), 1, "one target row");
    assert_eq!(events(&server, "target.added").await, 1, "one audit event");
    assert!(!partial.exists(), "the dead worker's files were tidied");
    let target_dir = server.data_dir.join("targets").join(&targets[0].build_id);
    assert!(target_dir.join("index.gbindex").is_file());
    assert_eq!(listing(&server.data_dir.join("targets")), vec![target_dir]);
    server.stop().await;
}

/// Job `id` as the database has it once `ready` holds (up to 30 s).
async fn job_when(
    server: &TestServer,
    id: i64,
    ready: impl Fn(&graftbench::store::jobs::Job) -> bool,
) -> graftbench::store::jobs::Job {
    for _ in 0..300 {
        let current = server.db.job(id).await.unwrap().unwrap();
        if ready(&current) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {id} did not reach the state waited for");
}

async fn a_job_cancelled_in_the_middle_of_its_index_phase_stops_its_work_and_leaves_nothing(
    backend: Backend,
) {
    let (server, _root) = server_with_fixture_root(backend).await;
    server.add_user("ada", &[Role::Admin]).await;
    let admin = server.signed_in("ada").await;
    let job = register_fixture(&server, &admin).await;

    // The worker's index thread is held in its phase until the worker leaves the job.
    let mut worker = worker_process(&server, Some("indexing"));
    job_when(&server, job, |j| {
        assert_ne!(
            j.state,
            JobState::Done,
            "is the binary built with test-hooks?"
        );
        j.state == JobState::Running && j.phase == "indexing"
    })
    .await;
    let partial = server
        .data_dir
        .join("targets")
        .join(format!(".partial-{job}-1"));
    assert!(partial.is_dir());

    let response = admin
        .post(server.url(&format!("/api/v1/jobs/{job}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    // The worker notices at its next heartbeat, and the blocking work stops with it:
    // the half-built files go, and the worker is free for the next job.
    let mut gone = false;
    for _ in 0..300 {
        if !partial.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone,
        "the cancelled job's work stopped and removed {partial:?}"
    );
    assert!(
        worker.try_wait().unwrap().is_none(),
        "the worker process lives on"
    );
    let cancelled = server.db.job(job).await.unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled, "{cancelled:?}");
    worker.kill().expect("stop the worker");
    worker.wait().expect("reaped");
    assert!(server.db.targets().await.unwrap().is_empty());
    assert_eq!(events(&server, "target.added").await, 0);
    assert_eq!(
        listing(&server.data_dir.join("targets")),
        Vec::<PathBuf>::new()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_cannot_hold_open_more_than_a_handful_of_job_event_streams() {
    // No workers: the registration stays queued, and its event streams open.
    let (server, _root) = server_with_fixture_root(Backend::Sqlite).await;
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("rita", &[Role::Reviewer]).await;
    let admin = server.signed_in("ada").await;
    let reviewer = server.signed_in("rita").await;
    let job = register_fixture(&server, &admin).await;
    let url = server.url(&format!("/api/v1/jobs/{job}/events"));
    let mut open = Vec::new();
    for _ in 0..graftbench::web::STREAMS_PER_USER {
        let response = admin.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let refused = admin.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused
        .text()
        .await
        .unwrap()
        .contains("job event streams are open for you already"));
    // Another user is not held back by the first one's streams.
    let other = reviewer.get(&url).send().await.unwrap();
    assert_eq!(other.status(), 200);
    // A closed stream gives its slot back (the server notices the client leaving).
    drop(open.pop());
    let mut reopened = false;
    for _ in 0..100 {
        let response = admin.get(&url).send().await.unwrap();
        if response.status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reopened, "the slot of a closed stream is given back");
    server.stop().await;
}

/// Submits `diff` as `client` (to be analysed for every target): the patch's id.
async fn submitted(server: &TestServer, client: &reqwest::Client, diff: &str) -> i64 {
    let response = graftbench_tests::submit_json(
        server,
        client,
        json!({ "title": "req_len and bump", "diff": diff }),
    )
    .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// The impact panel of patch `patch`'s revision `revision` (the latest when `None`) on
/// `target` (the server function the page loads it with).
async fn impact(
    client: &reqwest::Client,
    server: &TestServer,
    patch: i64,
    revision: Option<i64>,
    target: &str,
) -> Value {
    let mut form = vec![
        ("id", patch.to_string()),
        ("target", target.to_owned()),
        ("query", String::new()),
    ];
    form.extend(revision.map(|r| ("revision", r.to_string())));
    let response = client
        .post(server.url("/api/ui/impact"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Two builds of the fixtures, each with its source tree: `alpha` as the fix was written
/// for, `beta` built without IPA-SRA and with a source where the header hunk does not
/// apply. The matrix says so row by row and spells out how they differ; beta's graph
/// draws the hunk apart, and alpha's graph is whole.
async fn a_hunk_that_does_not_apply_to_one_of_two_targets_shows_in_the_matrix_and_its_graph(
    backend: Backend,
) {
    let (server, root) = server_with_fixture_root(backend).await;
    let beta = fixtures::Build::compile_with(5, &["-fno-ipa-sra"]);
    std::fs::write(root.path().join("vmlinux-beta"), beta.vmlinux()).unwrap();
    for (tree, header_line) in [
        ("src-alpha", "\treturn v * 2 + 1;"),
        ("src-beta", "\treturn v * 2 + 3;"),
    ] {
        let into = root.path().join(tree).join("analyzer/tests/fixtures");
        std::fs::create_dir_all(&into).unwrap();
        for entry in std::fs::read_dir(fixtures::fixtures()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), into.join(entry.file_name())).unwrap();
        }
        let header = std::fs::read_to_string(into.join("inlines.h")).unwrap();
        let header = header.replace("\treturn v * 2 + 1;", header_line);
        std::fs::write(into.join("inlines.h"), header).unwrap();
    }
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    let admin = server.signed_in("ada").await;
    let _workers = server.start_workers(1).await;
    for (name, vmlinux) in [("alpha", "vmlinux"), ("beta", "vmlinux-beta")] {
        let response = admin
            .post(server.url("/api/v1/targets"))
            .json(&json!({
                "vmlinux": vmlinux,
                "name": name,
                "kernel_release": format!("6.1.0-{name}"),
                "source_dir": format!("src-{name}"),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{name}");
        let job = response.json::<Value>().await.unwrap()["job"]
            .as_i64()
            .unwrap();
        let job = finished_job(&admin, &server, job).await;
        assert_eq!(job["state"], "done", "{job}");
    }
    let author = server.signed_in("alice").await;
    let patch = submitted(&server, &author, CLONE_AND_INLINE_FIX).await;
    // Both analysed.
    let mut view = Value::Null;
    for _ in 0..600 {
        view = impact(&author, &server, patch, Some(1), "beta").await;
        let rows = view["targets"].as_array().unwrap();
        if rows.len() == 2
            && rows
                .iter()
                .all(|r| r["job"].is_null() && r["state"] != "queued")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = |name: &str| {
        view["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}: {view}"))
    };
    let (alpha, beta) = (row("alpha"), row("beta"));
    assert_eq!(alpha["state"], "analysed", "{alpha}");
    assert_eq!(alpha["hunks_not_applied"], 0);
    assert_eq!(
        alpha["replace"], 5,
        "use_req, count_a, count_b, count_c, pair_a: {alpha}"
    );
    assert_eq!(beta["state"], "not_applicable", "{beta}");
    assert_eq!(beta["hunks_not_applied"], 1);
    let spelled = |row: &Value| -> Vec<String> {
        row["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        spelled(&beta).contains(
            &"hunk 1 of analyzer/tests/fixtures/inlines.h does not apply here; it does on alpha"
                .to_owned()
        ),
        "{beta}"
    );
    // Without IPA-SRA, beta replaces req_len itself; alpha replaces its caller.
    assert!(
        spelled(&beta)
            .iter()
            .any(|d| d.starts_with("replaces req_len that alpha does not")),
        "{beta}"
    );
    assert!(
        spelled(&alpha)
            .iter()
            .any(|d| d.contains("use_req") && d.contains("that beta does not")),
        "{alpha}"
    );
    // Beta's graph: the header hunk apart and reaching nothing; the clones.c hunk whole.
    assert_eq!(view["selected"], "beta");
    let nodes = view["graph"]["nodes"].as_array().unwrap();
    let labelled = |label: &str| {
        nodes
            .iter()
            .position(|n| n["label"] == label)
            .unwrap_or_else(|| panic!("no node {label}: {nodes:?}"))
    };
    let header_hunk = labelled("inlines.h hunk 1");
    assert_eq!(nodes[header_hunk]["kind"], "hunk-not-applied");
    assert_eq!(nodes[header_hunk]["related"], json!([header_hunk]));
    assert!(nodes.iter().all(|n| n["label"] != "bump()"));
    assert!(nodes
        .iter()
        .any(|n| n["label"] == "req_len()" && n["kind"] == "replace"));
    // Alpha's graph is whole: both hunks reach their functions.
    // Without a revision, the latest (as the patch page asks when its URL names none).
    let alpha_view = impact(&author, &server, patch, None, "alpha").await;
    assert_eq!(alpha_view["revision"], 1, "{alpha_view}");
    let nodes = alpha_view["graph"]["nodes"].as_array().unwrap().clone();
    for (label, kind) in [
        ("clones.c hunk 1", "hunk"),
        ("inlines.h hunk 1", "hunk"),
        ("bump()", "changed"),
        ("pair_a()", "replace"),
        ("use_req()", "replace"),
        ("req_len.isra.0()", "blocked"),
    ] {
        assert!(
            nodes
                .iter()
                .any(|n| n["label"] == label && n["kind"] == kind),
            "{label} {kind}: {nodes:?}"
        );
    }

    // Each changed file downloads as each target's tree has it, and with the fix applied
    // there: where a hunk does not apply (beta's header), the new side is a 409.
    let file = |side: &str, path: &str, target: &str| {
        let url = server.url(&format!(
            "/patches/{patch}/revisions/1/files/{side}?path={path}&target={target}"
        ));
        let author = author.clone();
        async move {
            let response = author.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            let disposition = response
                .headers()
                .get("content-disposition")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, response.text().await.unwrap(), disposition)
        }
    };
    let header = "analyzer/tests/fixtures/inlines.h";
    let (status, old, disposition) = file("old", header, "alpha").await;
    assert_eq!(status, 200, "{old}");
    assert!(old.contains("\treturn v * 2 + 1;\n"), "{old}");
    assert_eq!(
        disposition.as_deref(),
        Some(format!("attachment; filename=\"graftbench-{patch}-r1-old-inlines.h\"").as_str())
    );
    let (status, new, _) = file("new", header, "alpha").await;
    assert_eq!(status, 200, "{new}");
    assert_eq!(
        new,
        old.replace("\treturn v * 2 + 1;\n", "\treturn v * 2 + 2;\n"),
        "only the fix's line differs"
    );
    let (status, old, _) = file("old", header, "beta").await;
    assert_eq!(status, 200);
    assert!(
        old.contains("\treturn v * 2 + 3;\n"),
        "beta's own header: {old}"
    );
    let (status, why, _) = file("new", header, "beta").await;
    assert_eq!(status, 409, "{why}");
    assert!(why.contains("hunk 1") && why.contains("beta"), "{why}");
    let (status, new, _) = file("new", "analyzer/tests/fixtures/clones.c", "beta").await;
    assert_eq!(status, 200, "{new}");
    assert!(new.contains("\treturn r->len * 3 + 2;\n") && !new.contains("* 3 + 1;"));
    // Only the files the diff names, of targets that exist, on a side that exists.
    for (side, path, target, expected) in [
        ("old", "analyzer/tests/fixtures/clones.h", "alpha", 404),
        ("old", "../../etc/passwd", "alpha", 404),
        ("old", header, "gamma", 404),
        ("both", header, "alpha", 404),
        ("old", "", "alpha", 422),
    ] {
        let (status, body, _) = file(side, path, target).await;
        assert_eq!(status, expected, "{side} {path} {target}: {body}");
    }
    // The lines around a hunk, as each target's tree has them where the hunk falls there,
    // numbered as the diff counts (what the patch page's "more lines" controls show).
    let context = |target: &'static str, path: &'static str, hunk, below, count| {
        let ask = graftbench_tests::ContextAsk {
            patch,
            revision: 1,
            path,
            hunk,
            below,
            count,
            target: Some(target),
        };
        graftbench_tests::context_lines(&server, &author, ask)
    };
    let clones = "analyzer/tests/fixtures/clones.c";
    let source: Vec<String> = std::fs::read_to_string(fixtures::fixtures().join("clones.c"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let numbered = graftbench_tests::numbered_lines;
    for target in ["alpha", "beta"] {
        // Above the hunk at line 11: lines 7 to 10 (where a tree has the hunk elsewhere,
        // its own lines there: `sources::tests`).
        let (status, above) = context(target, clones, 0, false, 4).await;
        assert_eq!(status, 200, "{target}: {above}");
        let above = numbered(&above);
        assert_eq!(
            above.iter().map(|(o, n, _)| (*o, *n)).collect::<Vec<_>>(),
            vec![(7, 7), (8, 8), (9, 9), (10, 10)],
            "{target}"
        );
        for (o, _, text) in &above {
            assert_eq!(text, &source[*o as usize - 1], "{target} line {o}");
        }
        // Asking for more than there is stops at the file's first line.
        let (_, all_above) = context(target, clones, 0, false, 400).await;
        assert_eq!(numbered(&all_above).len(), 10, "{target}");
        // Below it: from line 14 to the file's end, no further.
        let (status, below) = context(target, clones, 0, true, 500).await;
        assert_eq!(status, 200, "{below}");
        let below = numbered(&below);
        assert_eq!(
            below.first().map(|l| (l.0, l.1)),
            Some((14, 14)),
            "{target}"
        );
        assert_eq!(below.len(), source.len() - 13, "{target}: to the end");
    }
    // Where the hunk does not apply there is nothing to show (422 naming it), and only
    // the diff's files, hunks and the patch's targets are read.
    let (status, why) = context("beta", header, 0, false, 5).await;
    assert_eq!(status, 422, "{why}");
    assert!(why.to_string().contains("hunk 1"), "{why}");
    for (target, path, hunk) in [
        ("alpha", "analyzer/tests/fixtures/clones.h", 0),
        ("alpha", "../../etc/passwd", 0),
        ("gamma", clones, 0),
        ("alpha", clones, 1),
    ] {
        let (status, body) = context(target, path, hunk, false, 5).await;
        assert_eq!(status, 404, "{target} {path} {hunk}: {body}");
    }
    // The patch page links them, for the first target with a source tree.
    let html = author
        .get(server.url(&format!("/patches/{patch}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!(
            "/patches/{patch}/revisions/1/files/new?path=analyzer%2Ftests%2Ffixtures%2Finlines.h&amp;target=alpha"
        )),
        "the page links the new side"
    );
    server.stop().await;
}

/// A reviewer notes that the header pitfall was considered, on its line: refused where
/// the analyses found no such pitfall, shown on the patch page and audited where they did.
/// Then a second revision's interdiff shows how the replace set changed.
async fn a_reviewer_marks_a_pitfall_considered_on_its_line_and_that_is_audited(backend: Backend) {
    let (server, _root) = server_with_fixture_root(backend).await;
    server.add_user("ada", &[Role::Admin]).await;
    server.add_user("alice", &[Role::Author]).await;
    server.add_user("bob", &[Role::Reviewer]).await;
    let admin = server.signed_in("ada").await;
    let _workers = server.start_workers(1).await;
    let job = register_fixture(&server, &admin).await;
    assert_eq!(finished_job(&admin, &server, job).await["state"], "done");
    let author = server.signed_in("alice").await;
    let patch = submitted(&server, &author, CLONE_AND_INLINE_FIX).await;
    analyses(&author, &server, patch, 1).await;
    let reviewer = server.signed_in("bob").await;
    let mark = |line: i64, kind: &str, thread: Option<i64>| {
        let mut body = json!({
            "revision": 1,
            "path": "analyzer/tests/fixtures/inlines.h",
            // The header pitfall is on the first changed line: the removed one.
            "side": "old",
            "line": line,
            "body": "every includer is in the replace set",
            "pitfall": kind,
        });
        if let Some(thread) = thread {
            body["thread"] = json!(thread);
        }
        reviewer
            .post(server.url(&format!("/api/v1/patches/{patch}/comments")))
            .json(&body)
            .send()
    };
    // Not where the analyses put it, not a kind they found there, not on a reply.
    for (line, kind) in [(7, "header"), (8, "static-local"), (8, "no-such-kind")] {
        let response = mark(line, kind, None).await.unwrap();
        assert_eq!(response.status(), 422, "{line} {kind}");
        let text = response.text().await.unwrap();
        assert!(text.contains("found no"), "{text}");
    }
    // The author may comment, but not mark their own fix's pitfalls considered.
    let response = author
        .post(server.url(&format!("/api/v1/patches/{patch}/comments")))
        .json(&json!({
            "revision": 1, "path": "analyzer/tests/fixtures/inlines.h", "side": "old",
            "line": 8, "body": "fine", "pitfall": "header",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = mark(8, "header", None).await.unwrap();
    assert_eq!(response.status(), 201);
    let thread = response.json::<Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let response = mark(8, "header", Some(thread)).await.unwrap();
    assert_eq!(response.status(), 422);
    // The patch page shows who considered it, on the pitfall.
    let page: Value = reviewer
        .post(server.url("/api/ui/patch"))
        .form(&[("id", patch.to_string())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pitfalls = page["pitfalls"].as_array().unwrap();
    let header = pitfalls
        .iter()
        .find(|p| p["kind"] == "header")
        .unwrap_or_else(|| panic!("{pitfalls:?}"));
    assert_eq!(header["old"], 8);
    assert_eq!(header["targets"], json!(["fixture"]));
    assert_eq!(
        header["considered"][0]["comment"],
        "every includer is in the replace set"
    );
    assert!(header["guide_url"]
        .as_str()
        .unwrap()
        .ends_with("#header-file-changes"));
    // Audited, with the pitfall named.
    let audited = server
        .db
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "comment.added")
        .collect::<Vec<_>>();
    assert_eq!(audited.len(), 1);
    assert!(
        audited[0].details.contains("\"pitfall\":\"header\""),
        "{}",
        audited[0].details
    );

    // Revision 2 drops the header change: the interdiff says which functions left the
    // replace set, and which stayed.
    let response = author
        .post(server.url(&format!("/api/v1/patches/{patch}/revisions")))
        .json(&json!({ "diff": CLONES_FIX }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    analyses(&author, &server, patch, 2).await;
    let interdiff: Value = reviewer
        .post(server.url("/api/ui/interdiff"))
        .form(&[("id", patch), ("from", 1), ("to", 2)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        interdiff["replace_sets"],
        json!([{
            "target": "fixture",
            "added": [],
            "removed": ["vmlinux:count_a", "vmlinux:count_b", "vmlinux:count_c", "vmlinux:pair_a"],
            "kept": 1,
            "missing": null,
        }])
    );
    server.stop().await;
}

/// A stand-in for `fs/proc/cmdline.c` at the lines the demo's cmdline fix is written for,
/// with what it calls: the demo's fix applies to it as it does to Debian's.
const STAND_IN_CMDLINE: &str =
    "/* A stand-in for fs/proc/cmdline.c: the demo's fix applies to it. */
struct seq_file { int count; };
char *saved_command_line = \"root=/dev/vda\";
void seq_puts(struct seq_file *m, const char *s);
void seq_putc(struct seq_file *m, char c);

static int cmdline_proc_show(struct seq_file *m, void *v)
{
\tseq_puts(m, saved_command_line);
\tseq_putc(m, '\\n');
\treturn 0;
}

int proc_cmdline_show(struct seq_file *m) { return cmdline_proc_show(m, 0) + 1; }
__attribute__((noinline)) void seq_puts(struct seq_file *m, const char *s) { m->count += s[0]; }
__attribute__((noinline)) void seq_putc(struct seq_file *m, char c) { m->count += c; }
__attribute__((no_instrument_function)) void __fentry__(void) { }
__attribute__((no_instrument_function)) void fixture_entry(void) { }
";

/// A kernel build standing in for the demo's Debian download, under `root/dir`: a
/// vmlinux built the way the kernel builds (ftrace entries, DWARF) and its source.
fn stand_in_kernel(root: &Path, dir: &str) {
    let source = root.join(dir).join("source/fs/proc");
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("cmdline.c"), STAND_IN_CMDLINE).unwrap();
    let build = root.join(dir).join("build");
    std::fs::create_dir_all(&build).unwrap();
    let object = build.join("cmdline.o");
    let run = |command: &mut std::process::Command| {
        let status = command.status().expect("gcc");
        assert!(status.success(), "{command:?}");
    };
    run(std::process::Command::new("gcc")
        .args([
            "-O2",
            "-fno-pie",
            "-pg",
            "-mfentry",
            "-mrecord-mcount",
            "-g",
        ])
        .arg("-c")
        .arg("fs/proc/cmdline.c")
        .arg("-o")
        .arg(&object)
        .current_dir(root.join(dir).join("source")));
    run(std::process::Command::new("gcc")
        .args(["-nostdlib", "-static", "-no-pie", "-Wl,-e,fixture_entry"])
        .arg("-Wl,--defsym=__start_mcount_loc=__start___mcount_loc")
        .arg("-Wl,--defsym=__stop_mcount_loc=__stop___mcount_loc")
        .arg(&object)
        .arg("-o")
        .arg(root.join(dir).join("vmlinux")));
}

/// `graftbench serve --demo` started as a new user would (the binary, a fresh data
/// directory), with `--demo-target` for the Debian download; its URL once it listens.
/// Without `stand_in` (a directory under a target root), the demo registers Debian's
/// build, as it does for a user.
pub(crate) fn start_demo(
    data: &Path,
    stand_in: Option<(&Path, &str)>,
) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(graftbench_binary());
    command
        .arg("--data-dir")
        .arg(data)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .arg("--site-root")
        .arg(graftbench_tests::site_root());
    if let Some((root, dir)) = stand_in {
        command
            .arg("--target-root")
            .arg(root)
            .args(["--demo-target", dir]);
    }
    let mut child = command
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("graftbench serve --demo");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("serve --demo printed its URL")
            .expect("read");
        if let Some(url) = line.strip_prefix("Graftbench is running at ") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    // Keep reading its output, or it blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

pub(crate) async fn demo_client(url: &str, name: &str, password: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .post(format!("{url}/login"))
        .header("Origin", url)
        .form(&[("username", name), ("password", password), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{name} signs in");
    client
}

/// The id of the demo patch whose title contains `needle`.
pub(crate) async fn demo_patch(client: &reqwest::Client, url: &str, needle: &str) -> i64 {
    let patches: Value = client
        .get(format!("{url}/api/v1/patches"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    patches["patches"]
        .as_array()
        .or(patches.as_array())
        .unwrap()
        .iter()
        .find(|p| p["title"].as_str().unwrap_or_default().contains(needle))
        .and_then(|p| p["id"].as_i64())
        .unwrap_or_else(|| panic!("no demo patch with {needle}: {patches}"))
}

pub(crate) async fn demo_impact(client: &reqwest::Client, url: &str, patch: i64) -> Value {
    client
        .post(format!("{url}/api/ui/impact"))
        .header("Origin", url)
        .form(&[
            ("id", patch.to_string()),
            ("revision", "1".to_owned()),
            ("query", String::new()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The demo, started fresh: it registers its kernel target in the background (a stand-in
/// build here, for the Debian download) and, once that job is done, the cmdline demo
/// fix has its graph with nothing done by hand; the CVE-2024-1086 fix does not apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_registers_its_kernel_in_the_background_and_shows_a_graph_for_its_fix() {
    let root = tempfile::tempdir().unwrap();
    stand_in_kernel(root.path(), "standin");
    let data = tempfile::tempdir().unwrap();
    let (mut child, url) = start_demo(data.path(), Some((root.path(), "standin")));
    let alice = demo_client(&url, "alice", "alice-demo-pw").await;
    let cmdline = demo_patch(&alice, &url, "/proc/cmdline").await;
    let verdict = demo_patch(&alice, &url, "CVE-2024-1086").await;
    let mut view = Value::Null;
    for _ in 0..600 {
        view = demo_impact(&alice, &url, cmdline).await;
        if !view["graph"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let nodes = view["graph"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("the demo fix has no graph: {view}"));
    assert_eq!(view["selected"], "demo");
    assert!(
        nodes
            .iter()
            .any(|n| n["label"] == "cmdline_proc_show()" && n["kind"] == "changed"),
        "{nodes:?}"
    );
    assert!(nodes.iter().any(|n| n["kind"] == "replace"), "{nodes:?}");
    let mut verdict_view = Value::Null;
    for _ in 0..300 {
        verdict_view = demo_impact(&alice, &url, verdict).await;
        if verdict_view["targets"][0]["job"].is_null()
            && verdict_view["targets"][0]["state"] != "queued"
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        verdict_view["targets"][0]["state"], "not_applicable",
        "{verdict_view}"
    );
    child.kill().ok();
    child.wait().ok();
}

/// Without its kernel (offline: nothing to download, or a build that is not there), the
/// demo still runs, and its pages say why there is no graph.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_without_its_kernel_runs_and_says_why_there_is_no_graph() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (mut child, url) = start_demo(data.path(), Some((root.path(), "not-there")));
    let alice = demo_client(&url, "alice", "alice-demo-pw").await;
    let view = demo_impact(&alice, &url, 1).await;
    let why = view["no_graph"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("No graph: the demo's kernel target: registering")
            && why.contains("vmlinux"),
        "{view}"
    );
    assert!(view["graph"].is_null());
    child.kill().ok();
    child.wait().ok();
}
