//! The `graftbench` binary's account and database commands, run as a user would.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn graftbench(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graftbench"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run graftbench");
    // The program may exit before reading its input (a usage error): a closed pipe
    // here is part of what is being tested, not a failure of the test.
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    child.wait_with_output().expect("wait")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn user_add_creates_accounts_with_roles_in_a_private_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = graftbench(
        &data,
        &[
            "user",
            "add",
            "alice",
            "--role",
            "author",
            "--role",
            "security-officer",
            "--display-name",
            "Alice A.",
            "--password-stdin",
        ],
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "created user alice (author, security_officer)\n"
    );
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory is private");
    assert!(data.join("graftbench.db").exists());

    let list = graftbench(&data, &["user", "list"], "");
    assert!(list.status.success());
    assert_eq!(
        text(&list.stdout),
        "alice\tAlice A.\tauthor,security_officer\n"
    );
}

#[test]
fn user_add_refuses_bad_input_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["user", "add", "bob", "--role", "wizard", "--password-stdin"],
            "long enough pw 1\n",
            "unknown role `wizard`",
        ),
        (
            &[
                "user",
                "add",
                "bob",
                "--role",
                "reviewer",
                "--password-stdin",
            ],
            "short\n",
            "at least 10 characters",
        ),
        (
            &[
                "user",
                "add",
                "../bob",
                "--role",
                "reviewer",
                "--password-stdin",
            ],
            "long enough pw 1\n",
            "is not allowed",
        ),
        (
            &["user", "add", "bob", "--role", "reviewer"],
            "",
            "pass --password-stdin",
        ),
        (
            &["user", "add", "bob", "--password-stdin"],
            "long enough pw 1\n",
            "--role",
        ),
    ];
    for (args, stdin, message) in cases {
        let out = graftbench(&data, args, stdin);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let first = graftbench(
        &data,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "reviewer",
            "--password-stdin",
        ],
        "long enough pw 1\n",
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    let again = graftbench(
        &data,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "auditor",
            "--password-stdin",
        ],
        "long enough pw 2\n",
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("a user named `bob` already exists"));
    let list = graftbench(&data, &["user", "list"], "");
    assert_eq!(
        text(&list.stdout),
        "bob\tbob\treviewer\n",
        "the failed attempt changed nothing"
    );
}

#[test]
fn migrate_is_idempotent_and_bad_urls_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for _ in 0..2 {
        let out = graftbench(&data, &["migrate"], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "database is up to date\n");
    }
    let out = graftbench(
        &data,
        &["--database-url", "mysql://u:secret@h/db", "migrate"],
        "",
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unsupported database URL"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "passwords stay out of messages: {stderr}"
    );
}

#[test]
fn demo_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = graftbench(
        &dir.path().join("data"),
        &["serve", "--demo", "--listen", "0.0.0.0:0"],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("loopback"),
        "{}",
        text(&out.stderr)
    );
}

#[path = "../../analyzer/tests/common/mod.rs"]
mod fixtures;

#[test]
fn analyze_reports_the_functions_to_replace() {
    let build = fixtures::Build::compile(5);
    let image = build.dir.path().join("vmlinux");
    std::fs::write(&image, build.vmlinux()).unwrap();
    let fix = build.dir.path().join("fix.patch");
    std::fs::write(
        &fix,
        "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
         @@ -12,1 +12,1 @@\n-\treturn r->len * 3 + 1;\n+\treturn r->len * 3 + 2;\n",
    )
    .unwrap();
    let data = build.dir.path().join("data");
    let image_arg = image.to_str().unwrap();
    let fix_arg = fix.to_str().unwrap();

    let json = graftbench(
        &data,
        &[
            "analyze",
            "--vmlinux",
            image_arg,
            fix_arg,
            "--format",
            "json",
        ],
        "",
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["version"], 1);
    assert_eq!(report["replace"][0]["symbol"], "use_req");
    assert_eq!(report["replace"][0]["object"], "vmlinux");
    assert_eq!(report["unpatchable"][0]["symbol"], "req_len.isra.0");
    assert!(!data.exists(), "analysis touches no database");

    let plain = graftbench(&data, &["analyze", "--vmlinux", image_arg, fix_arg], "");
    assert!(plain.status.success());
    let out = text(&plain.stdout);
    assert!(
        out.contains("Functions to replace (1):\n  vmlinux:use_req\n"),
        "{out}"
    );
    assert!(out.contains("- use_req() calls req_len.isra.0"), "{out}");

    let wrong = graftbench(&data, &["analyze", "--vmlinux", fix_arg, fix_arg], "");
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("is not a readable 64-bit ELF file"),
        "{}",
        text(&wrong.stderr)
    );
    let not_a_fix = graftbench(&data, &["analyze", "--vmlinux", image_arg, image_arg], "");
    assert!(!not_a_fix.status.success());
    assert!(
        text(&not_a_fix.stderr).contains("is not a usable fix"),
        "{}",
        text(&not_a_fix.stderr)
    );
}
