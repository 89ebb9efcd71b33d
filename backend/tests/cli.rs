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
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
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
