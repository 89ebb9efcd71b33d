//! The `graftbench` binary's account and database commands, run as a user would.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    assert_eq!(report["version"], analyzer::impact::REPORT_VERSION);
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

/// Writes the fixture vmlinux and a fix to `build`'s directory.
fn fixture_kernel(build: &fixtures::Build, fix_text: &str) -> (PathBuf, PathBuf) {
    let image = build.dir.path().join("vmlinux");
    std::fs::write(&image, build.vmlinux()).unwrap();
    let fix = build.dir.path().join("fix.patch");
    std::fs::write(&fix, fix_text).unwrap();
    (image, fix)
}

const ISRA_FIX: &str =
    "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
     @@ -12,1 +12,1 @@\n-\treturn r->len * 3 + 1;\n+\treturn r->len * 3 + 2;\n";

/// `graftbench analyze --index INDEX FIX --format json`, which must succeed, parsed.
fn analyze_json(data: &Path, index: &Path, fix: &Path) -> serde_json::Value {
    let json = graftbench(
        data,
        &[
            "analyze",
            "--index",
            arg(index),
            arg(fix),
            "--format",
            "json",
        ],
        "",
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    serde_json::from_slice(&json.stdout).expect("a JSON report")
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn index_is_built_once_and_answers_as_the_debug_info_does() {
    let build = fixtures::Build::compile(5);
    let (image, fix) = fixture_kernel(&build, ISRA_FIX);
    let data = build.dir.path().join("data");
    let index = build.dir.path().join("kernel.gbindex");

    let first = graftbench(&data, &["index", arg(&image), "-o", arg(&index)], "");
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("(no index yet): 1 object(s)"),
        "{}",
        text(&first.stdout)
    );
    let again = graftbench(&data, &["index", arg(&image), "-o", arg(&index)], "");
    assert!(again.status.success());
    assert_eq!(
        text(&again.stdout),
        format!("{} is up to date\n", index.display())
    );

    let direct = graftbench(&data, &["analyze", "--vmlinux", arg(&image), arg(&fix)], "");
    let indexed = graftbench(&data, &["analyze", "--index", arg(&index), arg(&fix)], "");
    assert!(indexed.status.success(), "{}", text(&indexed.stderr));
    assert_eq!(text(&indexed.stdout), text(&direct.stdout));
    assert!(text(&indexed.stdout).contains("vmlinux:use_req"));

    // Without -o the index goes to the data directory, named by the build-id.
    let cached = graftbench(&data, &["index", arg(&image)], "");
    assert!(cached.status.success(), "{}", text(&cached.stderr));
    let names: Vec<String> = std::fs::read_dir(data.join("indexes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(
        names[0].len() == 40 + ".gbindex".len() && names[0].ends_with(".gbindex"),
        "{names:?}"
    );
}

#[test]
fn a_stale_or_damaged_index_is_rebuilt_or_refused_by_name() {
    let build = fixtures::Build::compile(5);
    let (image, fix) = fixture_kernel(&build, ISRA_FIX);
    let data = build.dir.path().join("data");
    let index = build.dir.path().join("kernel.gbindex");
    let made = graftbench(&data, &["index", arg(&image), "-o", arg(&index)], "");
    assert!(made.status.success(), "{}", text(&made.stderr));

    // Another kernel build (DWARF 4 instead of 5: another build-id) makes it stale.
    let other_build = fixtures::Build::compile(4);
    let other = build.dir.path().join("vmlinux-other");
    std::fs::write(&other, other_build.vmlinux()).unwrap();
    let stale = graftbench(
        &data,
        &[
            "analyze",
            "--index",
            arg(&index),
            "--vmlinux",
            arg(&other),
            arg(&fix),
        ],
        "",
    );
    assert!(stale.status.success(), "{}", text(&stale.stderr));
    assert!(
        text(&stale.stderr).contains("the kernel build changed (build-ids differ)"),
        "{}",
        text(&stale.stderr)
    );
    assert!(text(&stale.stdout).contains("vmlinux:use_req"));

    // Damaged: refused with the file named, never a panic; with --vmlinux, rebuilt.
    let bytes = std::fs::read(&index).unwrap();
    std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
    let damaged = graftbench(&data, &["analyze", "--index", arg(&index), arg(&fix)], "");
    assert!(!damaged.status.success());
    let message = text(&damaged.stderr);
    assert!(
        message.contains(&format!("{} is not usable", index.display()))
            && message.contains("damaged"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
    let repaired = graftbench(
        &data,
        &[
            "analyze",
            "--index",
            arg(&index),
            "--vmlinux",
            arg(&image),
            arg(&fix),
        ],
        "",
    );
    assert!(repaired.status.success(), "{}", text(&repaired.stderr));
    assert!(text(&repaired.stderr).contains("rebuilt"));

    // Another format version: refused with what to do.
    let mut future = b"GRAFTIDX".to_vec();
    future.extend_from_slice(&99u32.to_le_bytes());
    std::fs::write(&index, future).unwrap();
    let newer = graftbench(&data, &["analyze", "--index", arg(&index), arg(&fix)], "");
    assert!(!newer.status.success());
    assert!(
        text(&newer.stderr).contains("rebuild it with `graftbench index`"),
        "{}",
        text(&newer.stderr)
    );

    let foreign = build.dir.path().join("foreign.patch");
    std::fs::write(
        &foreign,
        "--- a/drivers/gpu/x.c\n+++ b/drivers/gpu/x.c\n@@ -3 +3 @@\n-a\n+b\n",
    )
    .unwrap();
    let unknown = graftbench(
        &data,
        &["analyze", "--vmlinux", arg(&image), arg(&foreign)],
        "",
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr)
            .contains("none of the files the fix changes (drivers/gpu/x.c) is known to vmlinux"),
        "{}",
        text(&unknown.stderr)
    );

    let nothing = graftbench(&data, &["analyze", arg(&fix)], "");
    assert!(!nothing.status.success());
    assert!(
        text(&nothing.stderr).contains("--vmlinux"),
        "{}",
        text(&nothing.stderr)
    );
}

#[test]
fn modules_are_indexed_and_analysed_with_vmlinux() {
    let build = fixtures::Build::compile(5);
    let (image, fix) = fixture_kernel(
        &build,
        "--- a/analyzer/tests/fixtures/dup_b.c\n+++ b/analyzer/tests/fixtures/dup_b.c\n\
         @@ -6,1 +6,1 @@\n-old\n+new\n",
    );
    let modules = build.dir.path().join("lib/modules/kernel/fs");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(
        modules.join("fixture-mod.ko"),
        build.module_named("fixture_mod"),
    )
    .unwrap();
    std::fs::write(modules.join("README"), "not a module").unwrap();
    let data = build.dir.path().join("data");
    let index = build.dir.path().join("kernel.gbindex");
    let top = build.dir.path().join("lib");
    let made = graftbench(
        &data,
        &[
            "index",
            arg(&image),
            "--modules",
            arg(&top),
            "-o",
            arg(&index),
        ],
        "",
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(
        text(&made.stdout).contains("2 object(s)"),
        "{}",
        text(&made.stdout)
    );

    let report = analyze_json(&data, &index, &fix);
    assert_eq!(
        report["objects"],
        serde_json::json!(["vmlinux", "fixture_mod"])
    );
    let replaced: Vec<(String, String, u64)> = report["replace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["object"].as_str().unwrap().to_owned(),
                r["symbol"].as_str().unwrap().to_owned(),
                r["old_sympos"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        replaced,
        [
            ("vmlinux".to_owned(), "helper".to_owned(), 2),
            ("fixture_mod".to_owned(), "helper".to_owned(), 2)
        ]
    );

    let empty = build.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let none = graftbench(
        &data,
        &[
            "index",
            arg(&image),
            "--modules",
            arg(&empty),
            "-o",
            arg(&index),
        ],
        "",
    );
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no .ko files in it"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn a_damaged_module_is_named_and_the_others_indexed() {
    let build = fixtures::Build::compile(5);
    let (image, fix) = fixture_kernel(
        &build,
        "--- a/analyzer/tests/fixtures/dup_b.c\n+++ b/analyzer/tests/fixtures/dup_b.c\n\
         @@ -6,1 +6,1 @@\n-old\n+new\n",
    );
    let modules = build.dir.path().join("lib/modules/kernel/fs");
    std::fs::create_dir_all(&modules).unwrap();
    let module = build.module_named("fixture_mod");
    std::fs::write(modules.join("fixture-mod.ko"), &module).unwrap();
    std::fs::write(modules.join("broken.ko"), &module[..module.len() / 3]).unwrap();
    let data = build.dir.path().join("data");
    let index = build.dir.path().join("kernel.gbindex");
    let top = build.dir.path().join("lib");
    let made = graftbench(
        &data,
        &[
            "index",
            arg(&image),
            "--modules",
            arg(&top),
            "-o",
            arg(&index),
        ],
        "",
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let warned = text(&made.stderr);
    assert!(
        warned.contains("skipped the module") && warned.contains("broken.ko"),
        "{warned}"
    );
    let report = analyze_json(&data, &index, &fix);
    // The good module is analysed as if the bad one were not there...
    assert_eq!(
        report["objects"],
        serde_json::json!(["vmlinux", "fixture_mod"])
    );
    assert_eq!(report["replace"].as_array().unwrap().len(), 2, "{report}");
    // ... and the report says what it could not look into.
    let incomplete = report["incomplete"].as_array().unwrap();
    assert_eq!(incomplete.len(), 1, "{report}");
    assert_eq!(incomplete[0]["object"], "broken", "{report}");
    let shown = graftbench(&data, &["analyze", "--index", arg(&index), arg(&fix)], "");
    assert!(
        text(&shown.stdout).contains("INCOMPLETE"),
        "{}",
        text(&shown.stdout)
    );
    // The bad module is named by its bytes: the index stays up to date until it changes.
    let again = graftbench(
        &data,
        &[
            "index",
            arg(&image),
            "--modules",
            arg(&top),
            "-o",
            arg(&index),
        ],
        "",
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("is up to date"),
        "{}",
        text(&again.stdout)
    );
    // A module of unknown contents does not make a fix for another tree look analysed.
    let foreign = build.dir.path().join("foreign.patch");
    std::fs::write(
        &foreign,
        "--- a/drivers/not/here.c\n+++ b/drivers/not/here.c\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .unwrap();
    let refused = graftbench(
        &data,
        &["analyze", "--index", arg(&index), arg(&foreign)],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is the fix for this kernel"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn where_shows_clones_inlined_copies_and_callers() {
    let build = fixtures::Build::compile(5);
    let (image, _) = fixture_kernel(&build, ISRA_FIX);
    let data = build.dir.path().join("data");
    let json = graftbench(
        &data,
        &[
            "where",
            "--vmlinux",
            arg(&image),
            "bump",
            "cross_unit_raw",
            "req_len",
            "--format",
            "json",
        ],
        "",
    );
    assert!(json.status.success(), "{}", text(&json.stderr));
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    // bump(): one function, although two units carry an abstract instance of it.
    assert_eq!(found[0]["name"], "bump");
    assert_eq!(found[0]["declared_inline"], true);
    assert_eq!(found[0]["out_of_line"], serde_json::json!([]));
    assert_eq!(found[0]["inline_sites"], 5);
    assert_eq!(
        found[0]["inlined_into"],
        serde_json::json!({"count_a": 1, "count_b": 1, "count_c": 1, "pair_a": 2})
    );
    assert_eq!(found[1]["name"], "cross_unit_raw");
    assert_eq!(found[1]["out_of_line"][0]["traceable"], false);
    assert_eq!(found[1]["callers"], serde_json::json!(["use_cross"]));
    assert_eq!(found[2]["out_of_line"][0]["symbol"], "req_len.isra.0");
    assert_eq!(
        found[2]["out_of_line"][0]["abi_change"],
        "parameter `r` was removed (IPA-SRA)"
    );
    assert_eq!(found[2]["callers"], serde_json::json!(["use_req"]));

    let text_out = graftbench(&data, &["where", "--vmlinux", arg(&image), "bump"], "");
    assert!(text_out.status.success());
    assert!(
        text(&text_out.stdout).contains("inlined 5 time(s) into 4 function(s)"),
        "{}",
        text(&text_out.stdout)
    );
    let unknown = graftbench(
        &data,
        &["where", "--vmlinux", arg(&image), "no_such_fn"],
        "",
    );
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("no function named `no_such_fn`"));
}

#[test]
fn module_keygen_sign_verify_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (key, cert) = (
        dir.path().join("signing.key"),
        dir.path().join("signing.crt"),
    );
    let made = graftbench(
        &data,
        &[
            "module",
            "keygen",
            "--key",
            arg(&key),
            "--cert",
            arg(&cert),
            "--common-name",
            "Test livepatch key",
            "--bits",
            "2048",
        ],
        "",
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "the private key must be readable by its owner only"
    );
    let again = graftbench(
        &data,
        &["module", "keygen", "--key", arg(&key), "--cert", arg(&cert)],
        "",
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("exists: pass --force"));

    // A module: a relocatable object with a .modinfo, as modpost leaves one.
    let source = dir.path().join("m.c");
    std::fs::write(
        &source,
        "static const char i[] __attribute__((section(\".modinfo\"), used)) =\n\
         \"livepatch=Y\\0license=GPL\\0name=gb_test\\0graftbench.revision=abc123\";\n\
         int f(void) { return 1; }\n",
    )
    .unwrap();
    let ko = dir.path().join("gb_test.ko");
    let cc = Command::new("gcc")
        .args(["-O2", "-c"])
        .arg(&source)
        .arg("-o")
        .arg(&ko)
        .status()
        .unwrap();
    assert!(cc.success());

    let signed = graftbench(
        &data,
        &[
            "module",
            "sign",
            arg(&ko),
            "--key",
            arg(&key),
            "--cert",
            arg(&cert),
        ],
        "",
    );
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    assert!(text(&signed.stdout).contains("by Test livepatch key"));
    let verified = graftbench(
        &data,
        &["module", "verify", arg(&ko), "--cert", arg(&cert)],
        "",
    );
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    assert!(text(&verified.stdout).contains("good signature by Test livepatch key"));

    let info = graftbench(&data, &["module", "info", arg(&ko)], "");
    assert!(info.status.success(), "{}", text(&info.stderr));
    let info = text(&info.stdout);
    for expected in [
        "name:       gb_test",
        "livepatch:  yes",
        "signer:     Test livepatch key",
        "sig_hash:   sha256",
        "graftbench.revision: abc123",
    ] {
        assert!(info.contains(expected), "{expected} not in\n{info}");
    }

    // One flipped byte: refused, with the reason, exit code 1.
    let mut bytes = std::fs::read(&ko).unwrap();
    bytes[100] ^= 1;
    let damaged = dir.path().join("damaged.ko");
    std::fs::write(&damaged, bytes).unwrap();
    let refused = graftbench(
        &data,
        &["module", "verify", arg(&damaged), "--cert", arg(&cert)],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("the signature does not match the module's contents"),
        "{}",
        text(&refused.stderr)
    );
    let not_module = graftbench(
        &data,
        &[
            "module",
            "sign",
            arg(&cert),
            "--key",
            arg(&key),
            "--cert",
            arg(&cert),
        ],
        "",
    );
    assert!(!not_module.status.success());
    assert!(text(&not_module.stderr).contains("is not a module"));
}

#[test]
fn module_new_and_build_against_the_debian_headers() {
    const KDIR: &str = "/usr/src/linux-headers-6.1.0-56-amd64";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let source = dir.path().join("fix.c");
    std::fs::write(
        &source,
        "#include <linux/seq_file.h>\n\
         int lp_cmdline(struct seq_file *m, void *v);\n\
         int lp_cmdline(struct seq_file *m, void *v) { seq_puts(m, \"fixed\\n\"); return 0; }\n",
    )
    .unwrap();
    let module_dir = dir.path().join("gb_fix");
    let made = graftbench(
        &data,
        &[
            "module",
            "new",
            arg(&module_dir),
            "--name",
            "gb_fix",
            "--source",
            arg(&source),
            "--replace",
            "vmlinux:cmdline_proc_show=lp_cmdline",
            "--cumulative",
            "--info",
            "revision=0f1e2d",
            "--kdir",
            KDIR,
        ],
        "",
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    assert!(text(&made.stdout).contains("1 function(s), cumulative"));
    let scaffold = std::fs::read_to_string(module_dir.join("scaffold.rs")).unwrap();
    assert!(scaffold.contains("replace: true"));
    let built = graftbench(
        &data,
        &["module", "build", arg(&module_dir), "--kdir", KDIR],
        "",
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    let info = graftbench(
        &data,
        &["module", "info", arg(&module_dir.join("gb_fix.ko"))],
        "",
    );
    let info = text(&info.stdout);
    assert!(info.contains("livepatch:  yes"), "{info}");
    assert!(info.contains("graftbench.revision: 0f1e2d"), "{info}");
    assert!(
        info.contains("replaces:   vmlinux:cmdline_proc_show with lp_cmdline"),
        "{info}"
    );

    // From an analysis report: its replacements, by the livepatch_ naming convention.
    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        r#"{"version": 5, "objects": ["vmlinux"], "changed_lines": [], "files_without_code": [],
            "changed_functions": [], "unpatchable": [], "pitfalls": [],
            "replace": [{"symbol": "cmdline_proc_show", "object": "vmlinux", "old_sympos": 0,
                         "traceable": true, "reasons": []}]}"#,
    )
    .unwrap();
    let fixed = dir.path().join("fixed.c");
    std::fs::write(
        &fixed,
        "#include <linux/seq_file.h>\n\
         int livepatch_cmdline_proc_show(struct seq_file *m, void *v);\n\
         int livepatch_cmdline_proc_show(struct seq_file *m, void *v) { return 0; }\n",
    )
    .unwrap();
    let from_report = graftbench(
        &data,
        &[
            "module",
            "new",
            arg(&dir.path().join("gb_report")),
            "--name",
            "gb_report",
            "--source",
            arg(&fixed),
            "--from-report",
            arg(&report),
            "--kdir",
            KDIR,
        ],
        "",
    );
    assert!(
        from_report.status.success(),
        "{}",
        text(&from_report.stderr)
    );
    let scaffold = std::fs::read_to_string(dir.path().join("gb_report/scaffold.rs")).unwrap();
    assert!(
        scaffold.contains("new_func: livepatch_cmdline_proc_show"),
        "{scaffold}"
    );

    let bad = graftbench(
        &data,
        &[
            "module",
            "new",
            arg(&dir.path().join("x")),
            "--name",
            "gb_x",
            "--source",
            arg(&source),
            "--replace",
            "cmdline_proc_show",
            "--kdir",
            KDIR,
        ],
        "",
    );
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    let bad_klp = graftbench(
        &data,
        &[
            "module",
            "new",
            arg(&dir.path().join("y")),
            "--name",
            "gb_y",
            "--source",
            arg(&source),
            "--replace",
            "vmlinux:cmdline_proc_show=lp_cmdline",
            "--klp-symbol",
            "saved_command_line",
            "--kdir",
            KDIR,
        ],
        "",
    );
    assert_eq!(bad_klp.status.code(), Some(2));
    assert!(text(&bad_klp.stderr).contains("NAME=OBJECT[,SYMPOS]"));
    assert!(text(&bad.stderr).contains("OBJECT:FUNCTION[,SYMPOS]=NEW_FUNCTION"));
}

#[tokio::test]
async fn audit_verify_names_the_first_tampered_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["alice", "bob"] {
        let out = graftbench(
            &data,
            &["user", "add", name, "--role", "author", "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let intact = graftbench(&data, &["audit", "verify"], "");
    assert!(intact.status.success(), "{}", text(&intact.stderr));
    assert_eq!(
        text(&intact.stdout),
        "the audit trail is intact: 2 event(s)\n\
         every sign-off, revision, role and account state has its event\n"
    );

    // Someone edits the first event in the database.
    let url = format!("sqlite://{}", data.join("graftbench.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let broken = graftbench(&data, &["audit", "verify"], "");
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("the audit trail is broken at event #1"),
        "{}",
        text(&broken.stderr)
    );
}

#[test]
fn user_roles_grants_and_revokes_and_keeps_the_last_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (name, role) in [("root", "admin"), ("bob", "reviewer")] {
        let out = graftbench(
            &data,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = graftbench(
        &data,
        &[
            "user",
            "roles",
            "bob",
            "--grant",
            "security-officer",
            "--revoke",
            "reviewer",
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "bob\tsecurity_officer\n");
    for (args, message) in [
        (
            &["user", "roles", "root", "--revoke", "admin"][..],
            "`root` is the last admin",
        ),
        (
            &["user", "roles", "nobody", "--grant", "author"][..],
            "no user `nobody`",
        ),
        (&["user", "roles", "bob"][..], "say what to change"),
        (
            &[
                "user", "roles", "bob", "--grant", "author", "--revoke", "author",
            ][..],
            "both granted and revoked",
        ),
        (
            &["user", "roles", "bob", "--grant", "root"][..],
            "unknown role `root`",
        ),
    ] {
        let out = graftbench(&data, args, "");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let list = graftbench(&data, &["user", "list"], "");
    assert_eq!(
        text(&list.stdout),
        "bob\tbob\tsecurity_officer\nroot\troot\tadmin\n"
    );
}

#[test]
fn policy_show_prints_the_policy_in_force_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = graftbench(&data, &["policy", "show"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("# built-in defaults"), "{shown}");
    assert!(shown.contains("approvals_required = 2") && shown.contains("incident_hours = 24"));

    std::fs::write(
        data.join("policy.toml"),
        "approvals_required = 3\n[deadlines]\nincident_hours = 12\n",
    )
    .unwrap();
    let out = graftbench(&data, &["policy", "show"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("policy.toml"), "{shown}");
    assert!(shown.contains("approvals_required = 3") && shown.contains("incident_hours = 12"));
    assert!(
        shown.contains("emergency_hours = 72"),
        "unset keys keep their defaults"
    );

    for (bad, message) in [
        ("approvals = 3\n", "unknown field `approvals`"),
        (
            "approvals_required = 0\n",
            "approvals_required must be at least 1",
        ),
        ("min_cvss = 11.0\n", "is not a CVSS score"),
    ] {
        std::fs::write(data.join("policy.toml"), bad).unwrap();
        for args in [
            &["policy", "show"][..],
            &["serve", "--listen", "127.0.0.1:0"][..],
        ] {
            let out = graftbench(&data, args, "");
            assert!(!out.status.success(), "{bad} {args:?}");
            let err = text(&out.stderr);
            assert!(
                err.contains("policy.toml") && err.contains(message),
                "{bad}: {err}"
            );
        }
    }
}

/// Security review, finding 7: a data directory made with `--demo` and served later
/// without it still took `grace/grace-demo-pw` as an admin.
#[tokio::test]
async fn a_data_dir_with_demo_accounts_is_served_only_as_a_demo() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrated = graftbench(&data, &["migrate"], "");
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    {
        let url = format!("sqlite://{}", data.join("graftbench.db").display());
        let db = graftbench::store::Database::connect(&url).await.unwrap();
        graftbench::service::demo::seed(&db).await.unwrap();
        db.close().await;
    }
    let list = text(&graftbench(&data, &["user", "list"], "").stdout);
    assert!(list.contains("grace\tGrace Admin\tadmin\t(demo)"), "{list}");
    // A site root that does not exist: a server that got past the check would stop there.
    let serve = |data: &Path| {
        graftbench(
            data,
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--site-root",
                "/nonexistent",
            ],
            "",
        )
    };
    let refused = serve(&data);
    assert!(!refused.status.success());
    let why = text(&refused.stderr);
    for expected in [
        "demo accounts whose passwords are published",
        "alice, bob, carol, dave, erin, frank, grace",
        "graftbench user passwd NAME",
        "graftbench user disable NAME",
        "--demo",
    ] {
        assert!(why.contains(expected), "{expected}: {why}");
    }
    // Re-password one, disable the others: then the server may start.
    let passwd = graftbench(
        &data,
        &["user", "passwd", "grace", "--password-stdin"],
        "a new and private password\n",
    );
    assert!(passwd.status.success(), "{}", text(&passwd.stderr));
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        let out = graftbench(&data, &["user", "disable", name], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), format!("{name} disabled\n"));
    }
    let list = text(&graftbench(&data, &["user", "list"], "").stdout);
    assert!(list.contains("grace\tGrace Admin\tadmin\n"), "{list}");
    assert!(
        list.contains("alice\tAlice Author\tauthor\t(disabled, demo)"),
        "{list}"
    );
    let started = serve(&data);
    let why = text(&started.stderr);
    assert!(why.contains("browser bundle is missing"), "{why}");
    // The last enabled admin cannot be disabled.
    let out = graftbench(&data, &["user", "disable", "grace"], "");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("last enabled admin"),
        "{}",
        text(&out.stderr)
    );
}

/// A data directory from before demo accounts were marked: the published password itself
/// is what gives them away.
#[tokio::test]
async fn an_unmarked_account_that_takes_a_demo_password_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = graftbench(
        &data,
        &[
            "user",
            "add",
            "grace",
            "--role",
            "admin",
            "--password-stdin",
        ],
        "grace-demo-pw\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = graftbench(
        &data,
        &[
            "user",
            "add",
            "bob",
            "--role",
            "reviewer",
            "--password-stdin",
        ],
        "bob's own private password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let refused = graftbench(
        &data,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--site-root",
            "/nonexistent",
        ],
        "",
    );
    let why = text(&refused.stderr);
    assert!(why.contains("published (grace)"), "{why}");
}

/// Security review, finding 9: every address needs the URL users type, so the Host and
/// Origin checks have something to check against.
#[test]
fn listening_on_every_address_needs_a_public_url() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = graftbench(
        &data,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--site-root",
            "/nonexistent",
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("needs --public-url"),
        "{}",
        text(&out.stderr)
    );
    let out = graftbench(
        &data,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--public-url",
            "ftp://x",
            "--site-root",
            "/nonexistent",
        ],
        "",
    );
    assert!(
        text(&out.stderr).contains("is not a public URL"),
        "{}",
        text(&out.stderr)
    );
    let out = graftbench(
        &data,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--public-url",
            "https://graftbench.example.com",
            "--site-root",
            "/nonexistent",
        ],
        "",
    );
    assert!(
        text(&out.stderr).contains("browser bundle is missing"),
        "{}",
        text(&out.stderr)
    );
}

/// Security review, finding 8: rows written straight into the database beside an intact
/// chain (a role granted, an account enabled again) are named by `audit verify`.
#[tokio::test]
async fn audit_verify_names_rows_no_event_explains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (name, role) in [("alice", "author"), ("grace", "admin")] {
        let out = graftbench(
            &data,
            &["user", "add", name, "--role", role, "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = graftbench(&data, &["user", "disable", "alice"], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(graftbench(&data, &["audit", "verify"], "").status.success());
    let url = format!("sqlite://{}", data.join("graftbench.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO user_roles (user_id, role) SELECT id, 'admin' FROM users WHERE username = 'alice'",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE users SET disabled_at = NULL WHERE username = 'alice'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = graftbench(&data, &["audit", "verify"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("the audit trail is intact: 3 event(s)"));
    let why = text(&out.stderr);
    for expected in [
        "unexplained: user alice holds the role admin, but no audit event granted it",
        "unexplained: user alice is enabled, but the audit trail says disabled",
        "2 row(s) in the database that no audit event explains",
    ] {
        assert!(why.contains(expected), "{expected}: {why}");
    }
}

/// The README's "Livepatch modules" commands, run verbatim from a scratch directory as a
/// new user would: relative module directories, the binary on PATH.
#[test]
fn readme_module_commands_run_verbatim_from_a_scratch_directory() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split_once("### Livepatch modules")
        .expect("the README has a Livepatch modules section")
        .1;
    let script = section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("the section opens with a sh block")
        .0;
    assert!(
        script.contains("graftbench module build gb_cmdline"),
        "{script}"
    );
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(
        scratch.path().join("fix.c"),
        "#include <linux/seq_file.h>\n\
         int livepatch_cmdline_proc_show(struct seq_file *m, void *v);\n\
         int livepatch_cmdline_proc_show(struct seq_file *m, void *v) { seq_puts(m, \"fixed\\n\"); return 0; }\n",
    )
    .unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_graftbench"))
        .parent()
        .expect("the binary's directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(scratch.path())
        .env("PATH", path)
        .env("GRAFTBENCH_DATA_DIR", scratch.path().join("data"))
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run bash");
    assert!(
        run.status.success(),
        "{script}\nstdout:\n{}\nstderr:\n{}",
        text(&run.stdout),
        text(&run.stderr)
    );
    let info = text(&run.stdout);
    assert!(info.contains("livepatch:  yes"), "{info}");
    assert!(info.contains("signer:"), "{info}");
    assert!(
        info.contains("replaces:   vmlinux:cmdline_proc_show with livepatch_cmdline_proc_show"),
        "{info}"
    );
}

#[test]
fn audit_export_writes_the_trail_with_its_header_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["alice", "bob"] {
        let out = graftbench(
            &data,
            &["user", "add", name, "--role", "author", "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let file = dir.path().join("trail.jsonl");
    let out = graftbench(
        &data,
        &["audit", "export", "--format", "jsonl", "-o", arg(&file)],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["header"]["events"], 2);
    assert_eq!(lines[0]["header"]["first_seq"], 1);
    assert_eq!(lines[0]["header"]["last_seq"], 2);
    assert_eq!(lines[1]["action"], "user.created");
    assert_eq!(lines[2]["subject"], "user:bob");
    assert_eq!(lines[2]["prev_hash"], lines[1]["hash"]);
    // The export was recorded, and the chain still verifies with it.
    let csv = graftbench(
        &data,
        &["audit", "export", "--format", "csv", "--action", "audit."],
        "",
    );
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    assert!(csv.contains("# events,1\r\n"), "{csv}");
    assert!(csv.contains(",system,audit.exported,audit:trail,"), "{csv}");
    let verified = graftbench(&data, &["audit", "verify"], "");
    assert!(verified.status.success(), "{}", text(&verified.stderr));
    for bad in [
        vec!["audit", "export", "--format", "xml"],
        vec!["audit", "export", "--from", "last tuesday"],
    ] {
        let refused = graftbench(&data, &bad, "");
        assert!(!refused.status.success(), "{bad:?}");
        assert!(text(&refused.stderr).contains("error:"), "{bad:?}");
    }
}

/// Rewrites the whole trail consistently, as someone with write access to the database
/// could: `edit` changes the events, then every hash is recomputed and the head moved,
/// so the chain itself still verifies. With `tree`, the server's Merkle tree is emptied
/// too (an attacker who knows about it), so that only checkpoints kept outside remain.
async fn rewrite_trail(
    data: &Path,
    tree: bool,
    edit: impl Fn(&mut Vec<(i64, String, String, String, String, String)>),
) {
    use graftbench_domain::audit::{EventFields, GENESIS};
    use sqlx::Row;
    let url = format!("sqlite://{}", data.join("graftbench.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, subject, details FROM audit_events ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut events: Vec<(i64, String, String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r.get("seq"),
                r.get("at"),
                r.get("actor"),
                r.get("action"),
                r.get("subject"),
                r.get("details"),
            )
        })
        .collect();
    edit(&mut events);
    sqlx::query("DELETE FROM audit_events")
        .execute(&pool)
        .await
        .unwrap();
    let mut prev = GENESIS.to_owned();
    for (seq, at, actor, action, subject, details) in &events {
        let hash = EventFields {
            seq: *seq,
            at,
            actor,
            action,
            subject,
            details,
            prev_hash: &prev,
        }
        .hash();
        sqlx::query(
            "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(subject)
        .bind(details)
        .bind(&prev)
        .bind(&hash)
        .execute(&pool)
        .await
        .unwrap();
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(events.len() as i64)
        .bind(&prev)
        .execute(&pool)
        .await
        .unwrap();
    if tree {
        for sql in [
            "DELETE FROM audit_tree",
            "UPDATE audit_tree_head SET leaves = 0",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
    }
    pool.close().await;
}

#[tokio::test]
async fn a_signed_checkpoint_catches_a_trail_rewritten_from_the_start_or_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["alice", "bob", "carol"] {
        let out = graftbench(
            &data,
            &["user", "add", name, "--role", "author", "--password-stdin"],
            "a long enough password\n",
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let key = graftbench(&data, &["audit", "key"], "");
    assert!(key.status.success(), "{}", text(&key.stderr));
    let vkey = text(&key.stdout);
    assert!(vkey.starts_with("graftbench-audit+"), "{vkey}");
    let mode = std::fs::metadata(data.join("audit-checkpoint.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pinned = dir.path().join("pinned.vkey");
    std::fs::write(&pinned, &vkey).unwrap();
    let made = graftbench(&data, &["audit", "checkpoint"], "");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let note = text(&made.stdout);
    assert!(note.starts_with("graftbench-audit\n3\n"), "{note}");
    assert!(note.contains("\n\n— graftbench-audit "), "{note}");
    // Kept outside the server; the server keeps one too, and an export names it.
    let kept = dir.path().join("checkpoint.txt");
    std::fs::write(&kept, &note).unwrap();
    let export = graftbench(&data, &["audit", "export", "--subject", "user:bob"], "");
    assert!(export.status.success(), "{}", text(&export.stderr));
    let header: serde_json::Value =
        serde_json::from_str(text(&export.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(header["header"]["last_seq"], 2);
    assert_eq!(header["header"]["checkpoint"], note.as_str());
    let check = |data: &Path| {
        graftbench(
            data,
            &[
                "audit",
                "verify",
                "--checkpoint",
                arg(&kept),
                "--key",
                arg(&pinned),
            ],
            "",
        )
    };
    let agrees = check(&data);
    assert!(agrees.status.success(), "{}", text(&agrees.stderr));
    assert!(text(&agrees.stdout).contains("agrees with the checkpoint: its first 3 event(s)"));

    // A checkpoint whose signature is not the pinned key's is refused.
    let other = dir.path().join("other");
    let other_key = graftbench(&other, &["audit", "key"], "");
    let foreign = dir.path().join("foreign.vkey");
    std::fs::write(&foreign, text(&other_key.stdout)).unwrap();
    let refused = graftbench(
        &data,
        &[
            "audit",
            "verify",
            "--checkpoint",
            arg(&kept),
            "--key",
            arg(&foreign),
        ],
        "",
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("cannot be used"),
        "{}",
        text(&refused.stderr)
    );

    // The first event rewritten and every hash after it recomputed: the chain alone still
    // verifies, the checkpoint does not.
    rewrite_trail(&data, true, |events| events[0].2 = "mallory".into()).await;
    let chain = graftbench(&data, &["audit", "verify"], "");
    assert!(chain.status.success(), "{}", text(&chain.stderr));
    let rewritten = check(&data);
    assert!(!rewritten.status.success());
    assert!(
        text(&rewritten.stderr).contains("the trail was rewritten"),
        "{}",
        text(&rewritten.stderr)
    );

    // The last events deleted and the head moved back, so the chain links: the checkpoint
    // names what is missing (here the tables' cross-check would notice too, since the
    // deleted event created an account; an event that explains no row would not be).
    rewrite_trail(&data, true, |events| {
        events[0].2 = "system".into();
        // Carol's account and the export after the checkpoint.
        events.truncate(2);
    })
    .await;
    let cut = check(&data);
    assert!(!cut.status.success());
    assert!(
        text(&cut.stderr).contains("the trail has 2 event(s) but the checkpoint committed to 3"),
        "{}",
        text(&cut.stderr)
    );
}

#[tokio::test]
async fn a_rewrite_is_bounded_by_the_checkpoints_and_caught_by_the_servers_own_tree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let add = |name: &str| add_author(&data, name);
    let checkpoint = |name: &str| {
        let made = graftbench(&data, &["audit", "checkpoint"], "");
        assert!(made.status.success(), "{}", text(&made.stderr));
        let kept = dir.path().join(name);
        std::fs::write(&kept, text(&made.stdout)).unwrap();
        kept
    };
    add("alice");
    add("bob");
    let two = checkpoint("two.txt");
    add("carol");
    add("dave");
    let four = checkpoint("four.txt");
    add("erin");
    let key = graftbench(&data, &["audit", "key"], "");
    let pinned = dir.path().join("pinned.vkey");
    std::fs::write(&pinned, text(&key.stdout)).unwrap();

    // Event #3 (carol's account) rewritten, every hash after it recomputed, but the
    // server's tree left alone: plain verify already notices.
    rewrite_trail(&data, false, |events| events[2].2 = "mallory".into()).await;
    let plain = graftbench(&data, &["audit", "verify"], "");
    assert!(!plain.status.success());
    assert!(
        text(&plain.stderr).contains("not the ones the server's Merkle tree holds"),
        "{}",
        text(&plain.stderr)
    );

    // The same with the tree emptied too: the checkpoints kept outside bound the change.
    rewrite_trail(&data, true, |events| events[2].2 = "mallory".into()).await;
    let plain = graftbench(&data, &["audit", "verify"], "");
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let held = graftbench(
        &data,
        &[
            "audit",
            "verify",
            "--checkpoint",
            arg(&four),
            "--checkpoint",
            arg(&two),
            "--key",
            arg(&pinned),
        ],
        "",
    );
    assert!(!held.status.success());
    assert!(
        text(&held.stdout).contains("agrees with the checkpoint: its first 2 event(s)"),
        "{}",
        text(&held.stdout)
    );
    assert!(
        text(&held.stderr).contains(
            "the first changed event is between #3 and #4 (the checkpoint of 2 still agrees)"
        ),
        "{}",
        text(&held.stderr)
    );

    // Without a key to check them with, checkpoints are refused rather than trusted.
    let elsewhere = dir.path().join("elsewhere");
    let keyless = graftbench(
        &elsewhere,
        &["audit", "verify", "--checkpoint", arg(&two)],
        "",
    );
    assert!(!keyless.status.success());
    assert!(
        text(&keyless.stderr).contains("--key FILE"),
        "{}",
        text(&keyless.stderr)
    );
    assert!(!elsewhere.join("audit-checkpoint.key").exists());
}

#[tokio::test]
async fn a_clock_that_steps_backwards_is_recorded_in_the_trail() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let add = |name: &str| add_author(&data, name);
    add("alice");
    // The newest event as if written by a clock a century ahead, then set right.
    let url = format!("sqlite://{}", data.join("graftbench.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_head SET at = '2126-01-01T00:00:00.000Z'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    add("bob");
    let export = graftbench(&data, &["audit", "export"], "");
    assert!(export.status.success(), "{}", text(&export.stderr));
    let events: Vec<serde_json::Value> = text(&export.stdout)
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["user.created", "clock.stepped_back", "user.created"]
    );
    let warning: serde_json::Value =
        serde_json::from_str(events[1]["details"].as_str().unwrap()).unwrap();
    assert_eq!(warning["newest_event_at"], "2126-01-01T00:00:00.000Z");
    let verify = graftbench(&data, &["audit", "verify"], "");
    assert!(verify.status.success(), "{}", text(&verify.stderr));
}

#[tokio::test]
async fn an_evidence_bundle_verifies_offline_and_any_flipped_byte_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let migrated = graftbench(&data, &["migrate"], "");
    assert!(migrated.status.success(), "{}", text(&migrated.stderr));
    {
        let url = format!("sqlite://{}", data.join("graftbench.db").display());
        let db = graftbench::store::Database::connect(&url).await.unwrap();
        graftbench::service::demo::seed(&db).await.unwrap();
        db.close().await;
    }
    let key = graftbench(&data, &["audit", "key"], "");
    let pinned = dir.path().join("pinned.vkey");
    std::fs::write(&pinned, text(&key.stdout)).unwrap();
    let bundle = dir.path().join("patch-1.tar");
    let made = graftbench(
        &data,
        &["audit", "evidence", "--patch", "1", "-o", arg(&bundle)],
        "",
    );
    assert!(made.status.success(), "{}", text(&made.stderr));
    // Offline: another data directory, no database of the server's.
    let elsewhere = dir.path().join("auditor");
    let check = |file: &Path| {
        graftbench(
            &elsewhere,
            &[
                "audit",
                "verify",
                "--bundle",
                arg(file),
                "--key",
                arg(&pinned),
            ],
            "",
        )
    };
    let passed = check(&bundle);
    assert!(
        passed.status.success(),
        "{}{}",
        text(&passed.stdout),
        text(&passed.stderr)
    );
    let said = text(&passed.stdout);
    for expected in [
        "member(s) match the manifest's SHA-256 sums",
        "events.jsonl: every event is in the tree of checkpoint.txt",
        "bytes before the seal are the ones event #",
        "the sealing event #",
        "every check passed",
    ] {
        assert!(said.contains(expected), "{expected}: {said}");
    }
    // The export is in the trail.
    let trail = text(
        &graftbench(
            &data,
            &["audit", "export", "--action", "audit.evidence_exported"],
            "",
        )
        .stdout,
    );
    assert_eq!(trail.lines().count(), 2, "{trail}");

    // A flipped byte anywhere: in a header, a diff, the events, the manifest, the
    // padding, the seal, the archive's end.
    let bytes = std::fs::read(&bundle).unwrap();
    let flipped = dir.path().join("flipped.tar");
    let step = (bytes.len() / 97).max(1);
    let mut positions: Vec<usize> = (0..bytes.len()).step_by(step).collect();
    positions.extend([
        0,
        100,
        148,
        257,
        512,
        bytes.len() - 1,
        bytes.len() - 1024,
        bytes.len() - 1500,
    ]);
    for at in positions {
        let mut changed = bytes.clone();
        changed[at] ^= 0x01;
        std::fs::write(&flipped, &changed).unwrap();
        let out = check(&flipped);
        assert!(
            !out.status.success(),
            "a flipped byte at {at} of {} went unnoticed: {}",
            bytes.len(),
            text(&out.stdout)
        );
    }
    // A byte added at the end, or the last block cut.
    let mut longer = bytes.clone();
    longer.push(0);
    std::fs::write(&flipped, &longer).unwrap();
    assert!(!check(&flipped).status.success());
    std::fs::write(&flipped, &bytes[..bytes.len() - 512]).unwrap();
    assert!(!check(&flipped).status.success());
    // Without a pinned key nothing is trusted.
    let keyless = graftbench(
        &elsewhere,
        &["audit", "verify", "--bundle", arg(&bundle)],
        "",
    );
    assert!(!keyless.status.success());
    assert!(
        text(&keyless.stderr).contains("--key FILE"),
        "{}",
        text(&keyless.stderr)
    );

    // A JSON Lines export (the whole trail) verifies offline against its checkpoint; a
    // changed event is named.
    let checkpoint = graftbench(&data, &["audit", "checkpoint"], "");
    assert!(checkpoint.status.success(), "{}", text(&checkpoint.stderr));
    let export = dir.path().join("trail.jsonl");
    let exported = graftbench(&data, &["audit", "export", "-o", arg(&export)], "");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let passed = check(&export);
    assert!(
        passed.status.success(),
        "{}{}",
        text(&passed.stdout),
        text(&passed.stderr)
    );
    assert!(text(&passed.stdout).contains("are the ones the checkpoint commits to"));
    let mut lines: Vec<String> = text(&std::fs::read(&export).unwrap())
        .lines()
        .map(str::to_owned)
        .collect();
    let mut event: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    event["actor"] = "eve".into();
    lines[3] = event.to_string();
    std::fs::write(&flipped, lines.join("\n") + "\n").unwrap();
    let failed = check(&flipped);
    assert!(!failed.status.success());
    assert!(
        text(&failed.stderr).contains("its fields do not match its hash"),
        "{}",
        text(&failed.stderr)
    );

    // The whole trail again, now longer than any checkpoint: the export signs one that
    // covers it and ties its own tree to it with a consistency proof.
    let longer = dir.path().join("longer.jsonl");
    let exported = graftbench(&data, &["audit", "export", "-o", arg(&longer)], "");
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let passed = check(&longer);
    assert!(passed.status.success(), "{}", text(&passed.stderr));
    assert!(
        text(&passed.stdout).contains("(consistency proof)"),
        "{}",
        text(&passed.stdout)
    );

    // A filtered export is not the trail from its start: each event carries its
    // inclusion proof, and a changed proof is caught.
    let filtered = dir.path().join("filtered.jsonl");
    let exported = graftbench(
        &data,
        &[
            "audit",
            "export",
            "--action",
            "audit.",
            "-o",
            arg(&filtered),
        ],
        "",
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    let lines: Vec<String> = text(&std::fs::read(&filtered).unwrap())
        .lines()
        .map(str::to_owned)
        .collect();
    let header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(header["header"]["inclusion_proofs"], true);
    assert!(lines.len() >= 3, "{lines:?}");
    let passed = check(&filtered);
    assert!(
        passed.status.success(),
        "{}{}",
        text(&passed.stdout),
        text(&passed.stderr)
    );
    assert!(text(&passed.stdout).contains("(inclusion proofs)"));
    let mut event: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    let first = event["proof"][0].as_str().unwrap().to_owned();
    let second = event["proof"][1].as_str().unwrap().to_owned();
    event["proof"][0] = second.into();
    event["proof"][1] = first.into();
    let mut changed = lines.clone();
    changed[2] = event.to_string();
    std::fs::write(&flipped, changed.join("\n") + "\n").unwrap();
    let failed = check(&flipped);
    assert!(!failed.status.success());
    assert!(
        text(&failed.stderr).contains("inclusion proof does not lead to the checkpoint's root"),
        "{}",
        text(&failed.stderr)
    );
}

/// Adds an author account from the command line.
fn add_author(data: &Path, name: &str) {
    let out = graftbench(
        data,
        &["user", "add", name, "--role", "author", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The one archive segment file whose name starts with `segment-FIRST-`.
fn segment_file(data: &Path, first: u64) -> PathBuf {
    let prefix = format!("segment-{first:012}-");
    let found: Vec<PathBuf> = std::fs::read_dir(data.join("audit-archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test]
async fn old_events_move_into_segments_that_verify_offline_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        add_author(&data, name);
    }
    // Three events from early 2024 and two from mid 2025; the sixth is today's.
    rewrite_trail(&data, true, |events| {
        for (i, event) in events.iter_mut().enumerate() {
            event.1 = match i {
                0..=2 => format!("2024-01-0{}T10:00:00.000Z", i + 1),
                3 | 4 => format!("2025-06-0{}T10:00:00.000Z", i + 1),
                _ => continue,
            };
        }
    })
    .await;
    let key = graftbench(&data, &["audit", "key"], "");
    let pinned = dir.path().join("pinned.vkey");
    std::fs::write(&pinned, text(&key.stdout)).unwrap();
    let before = graftbench(&data, &["audit", "checkpoint"], "");
    assert!(before.status.success(), "{}", text(&before.stderr));
    let held = dir.path().join("before.txt");
    std::fs::write(&held, &before.stdout).unwrap();
    let run = |args: &[&str]| {
        let out = graftbench(&data, args, "");
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };

    // Keep 30 months online: the 2024 events go.
    std::fs::write(data.join("policy.toml"), "[audit]\nonline_months = 30\n").unwrap();
    let (ok, out, err) = run(&["audit", "archive"]);
    assert!(ok, "{err}");
    assert!(out.contains("archived events #1..#3 (3 event(s)"), "{out}");
    let (ok, out, err) = run(&["audit", "archive"]);
    assert!(ok && out.contains("nothing to archive"), "{out}{err}");
    // Then 12: the 2025 ones too, in a second segment after the first.
    std::fs::write(data.join("policy.toml"), "[audit]\nonline_months = 12\n").unwrap();
    let (ok, out, err) = run(&["audit", "archive"]);
    assert!(ok, "{err}");
    assert!(out.contains("archived events #4..#5 (2 event(s)"), "{out}");

    // Each segment verifies on its own, the second from the frontier of the first.
    let first = segment_file(&data, 1);
    let second = segment_file(&data, 4);
    let mode = std::fs::metadata(data.join("audit-archive"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the archive is private: {mode:o}");
    let key_arg = pinned.to_str().unwrap();
    for (segment, says) in [
        (
            &first,
            "the export's first 3 event(s) are the ones the checkpoint commits to",
        ),
        (
            &second,
            "the export's events #4..#5, on the header's frontier of the 3 before them, are the \
             ones the checkpoint commits to",
        ),
    ] {
        let (ok, out, err) = run(&[
            "audit",
            "verify",
            "--bundle",
            arg(segment),
            "--key",
            key_arg,
        ]);
        assert!(ok, "{segment:?}: {out}{err}");
        assert!(out.contains(says), "{out}");
    }
    // The whole trail, segments and online events, still verifies against the checkpoint
    // taken before anything was archived, and the archiving is in it.
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        "--checkpoint",
        arg(&held),
        "--key",
        key_arg,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("8 event(s), 5 of them in archive segments"),
        "{out}"
    );
    // The online trail exports from its oldest event with the frontier before it.
    let export = dir.path().join("online.jsonl");
    let (ok, _, err) = run(&["audit", "export", "--output", arg(&export)]);
    assert!(ok, "{err}");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&export)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["header"]["archived_through"], 5);
    assert_eq!(header["header"]["first_seq"], 6);
    assert_eq!(header["header"]["frontier"].as_array().unwrap().len(), 2);
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&export),
        "--key",
        key_arg,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("on the header's frontier of the 5 before them"),
        "{out}"
    );
    // The frontier alone rebuilds the root of the tree it ends: an export that swaps in
    // the checkpoint of exactly the events before it (the second segment's) ties none of
    // its own events to anything, and is refused.
    let segment_header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&second)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let mut forged = header.clone();
    forged["header"]["checkpoint"] = segment_header["header"]["checkpoint"].clone();
    forged["header"]["consistency_proof"] = serde_json::Value::Null;
    let online = std::fs::read_to_string(&export).unwrap();
    let rest: Vec<&str> = online.lines().skip(1).collect();
    let forged_export = dir.path().join("forged-online.jsonl");
    std::fs::write(&forged_export, format!("{forged}\n{}\n", rest.join("\n"))).unwrap();
    let (ok, _, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&forged_export),
        "--key",
        key_arg,
    ]);
    assert!(
        !ok && err.contains("the checkpoint commits to none of the exported events"),
        "{err}"
    );

    // Evidence for a period now in the archive holds its events, proved like the rest.
    let bundle = dir.path().join("2024.tar");
    let (ok, _, err) = run(&[
        "audit",
        "evidence",
        "--from",
        "2024-01-01",
        "--to",
        "2024-02-01",
        "-o",
        arg(&bundle),
    ]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&bundle),
        "--key",
        key_arg,
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("events.jsonl: 3 event(s), each one's fields match its hash"),
        "{out}"
    );
    // A changed archived event: the segment's own check names the line, and the live
    // verify finds the file no longer the one archived.
    let original = std::fs::read_to_string(&second).unwrap();
    std::fs::write(&second, original.replace("erin", "eric")).unwrap();
    let (ok, _, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&second),
        "--key",
        key_arg,
    ]);
    assert!(
        !ok && err.contains("event #5: its fields do not match its hash"),
        "{err}"
    );
    let (ok, _, err) = run(&["audit", "verify"]);
    assert!(!ok && err.contains("was changed"), "{err}");
    // A forged frontier does not rebuild the checkpoint's root.
    let mut lines: Vec<String> = original.lines().map(str::to_owned).collect();
    let mut forged: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    forged["header"]["frontier"][0] = forged["header"]["frontier"][1].clone();
    lines[0] = forged.to_string();
    std::fs::write(&second, lines.join("\n") + "\n").unwrap();
    let (ok, _, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&second),
        "--key",
        key_arg,
    ]);
    assert!(
        !ok && err.contains("are not the ones the checkpoint commits to"),
        "{err}"
    );
    // A missing segment is named.
    std::fs::remove_file(&second).unwrap();
    let (ok, _, err) = run(&["audit", "verify"]);
    assert!(
        !ok && err.contains(second.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
    std::fs::write(&second, &original).unwrap();
    let (ok, out, err) = run(&["audit", "verify"]);
    assert!(ok, "{out}{err}");
    // A segment row pointing outside the archive is refused, not opened.
    let url = format!("sqlite://{}", data.join("graftbench.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE audit_segments SET file = '../graftbench.db' WHERE first_seq = 4")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (ok, _, err) = run(&["audit", "verify"]);
    assert!(!ok && err.contains("not a segment file name"), "{err}");
}

#[tokio::test]
async fn a_rotated_key_is_announced_by_the_old_one_and_verifiers_follow_it() {
    use graftbench::service::checkpoints;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = graftbench(&data, args, "");
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    add_author(&data, "alice");
    let (_, old_vkey, _) = run(&["audit", "key"]);
    let old_pinned = dir.path().join("old.vkey");
    std::fs::write(&old_pinned, &old_vkey).unwrap();
    let old_key_file = std::fs::read_to_string(data.join(checkpoints::KEY_FILE)).unwrap();
    let (ok, before, err) = run(&["audit", "checkpoint"]);
    assert!(ok, "{err}");
    let before_file = dir.path().join("before.txt");
    std::fs::write(&before_file, &before).unwrap();

    let (ok, new_vkey, err) = run(&["audit", "rotate-key"]);
    assert!(ok, "{err}");
    assert!(err.contains("rotated at event #2"), "{err}");
    assert_ne!(new_vkey.trim(), old_vkey.trim());
    let new_pinned = dir.path().join("new.vkey");
    std::fs::write(&new_pinned, &new_vkey).unwrap();
    add_author(&data, "bob");
    let (ok, after, err) = run(&["audit", "checkpoint"]);
    assert!(ok, "{err}");
    let after_file = dir.path().join("after.txt");
    std::fs::write(&after_file, &after).unwrap();
    assert!(
        checkpoints::open(after.as_bytes(), &old_vkey).is_err(),
        "signed by the new key only"
    );

    // Pinned to the old key, the rotation is followed forwards to the new one; pinned to
    // the new key alone, a checkpoint the old key signed is not trusted (a retired key
    // may have leaked): pin both for evidence from before the rotation.
    let both_pinned = dir.path().join("both.vkey");
    std::fs::write(&both_pinned, format!("{new_vkey}{old_vkey}")).unwrap();
    let verify_held = |pinned: &Path| {
        run(&[
            "audit",
            "verify",
            "--checkpoint",
            arg(&before_file),
            "--checkpoint",
            arg(&after_file),
            "--key",
            arg(pinned),
        ])
    };
    for pinned in [&old_pinned, &both_pinned] {
        let (ok, out, err) = verify_held(pinned);
        assert!(ok, "{pinned:?}: {out}{err}");
        assert!(
            out.contains("the key rotation at event #2: announced by a trusted key"),
            "{out}"
        );
    }
    let (ok, _, err) = verify_held(&new_pinned);
    assert!(!ok && err.contains("before.txt cannot be used"), "{err}");
    // An export and an evidence bundle carry the announcements: each checks with the
    // newest key alone, or from the old one forwards.
    let export = dir.path().join("trail.jsonl");
    let (ok, _, err) = run(&["audit", "export", "--output", arg(&export)]);
    assert!(ok, "{err}");
    let bundle = dir.path().join("evidence.tar");
    let (ok, _, err) = run(&[
        "audit",
        "evidence",
        "--from",
        "2020-01-01",
        "--to",
        "2100-01-01",
        "-o",
        arg(&bundle),
    ]);
    assert!(ok, "{err}");
    for (file, pinned) in [
        (&export, &old_pinned),
        (&export, &new_pinned),
        (&bundle, &old_pinned),
        (&bundle, &new_pinned),
    ] {
        let (ok, out, err) = run(&[
            "audit",
            "verify",
            "--bundle",
            arg(file),
            "--key",
            arg(pinned),
        ]);
        assert!(ok, "{file:?} {pinned:?}: {out}{err}");
        assert!(out.contains("the key rotation at event #2"), "{out}");
    }
    // An announcement whose event names another key is not believed.
    let exported = std::fs::read_to_string(&export).unwrap();
    let forged_key = new_vkey
        .trim()
        .replace("graftbench-audit+", "graftbench-audit+0");
    let (ok, _, err) = run(&[
        "audit",
        "verify",
        "--bundle",
        arg(&{
            let path = dir.path().join("forged.jsonl");
            std::fs::write(&path, exported.replacen(new_vkey.trim(), &forged_key, 1)).unwrap();
            path
        }),
        "--key",
        arg(&old_pinned),
    ]);
    assert!(
        !ok && err.contains("the key rotation at event #2:"),
        "{err}"
    );

    // The retired key signs nothing after the rotation that a verifier accepts...
    let retired = checkpoints::open(after.as_bytes(), &new_vkey).unwrap();
    let old_skey = old_key_file.lines().next().unwrap();
    let forged = checkpoints::sign(retired.size(), *retired.hash(), old_skey).unwrap();
    let forged_file = dir.path().join("forged.txt");
    std::fs::write(&forged_file, forged).unwrap();
    let (ok, _, err) = run(&[
        "audit",
        "verify",
        "--checkpoint",
        arg(&forged_file),
        "--key",
        arg(&old_pinned),
    ]);
    assert!(
        !ok && err.contains("trusted only for checkpoints of 0 to 2 events"),
        "{err}"
    );
    // ... and a replica still holding it stops signing.
    std::fs::write(data.join(checkpoints::KEY_FILE), &old_key_file).unwrap();
    let (ok, _, err) = run(&["audit", "checkpoint"]);
    assert!(
        !ok && err.contains("retired by the key rotation at event #2"),
        "{err}"
    );
}

#[test]
fn target_add_registers_an_in_house_build_under_the_root_and_retire_keeps_it() {
    let build = fixtures::Build::compile(5);
    let root = build.dir.path().join("kernels");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("vmlinux"), build.vmlinux()).unwrap();
    let data = build.dir.path().join("data");
    let root_arg = root.to_str().unwrap();
    let added = graftbench(
        &data,
        &[
            "target",
            "add",
            "--vmlinux",
            "vmlinux",
            "--kernel-release",
            "6.1.0-fixture",
            "--name",
            "fixture",
            "--target-root",
            root_arg,
        ],
        "",
    );
    assert!(added.status.success(), "{}", text(&added.stderr));
    let said = text(&added.stdout);
    assert!(said.starts_with("registered fixture: build-id "), "{said}");
    let listed = text(&graftbench(&data, &["target", "list"], "").stdout);
    assert!(
        listed.contains("fixture") && listed.contains("6.1.0-fixture"),
        "{listed}"
    );
    // The same build again, a path outside the root, a release apt never heard of.
    for (args, says) in [
        (
            vec![
                "target",
                "add",
                "--vmlinux",
                "vmlinux",
                "--kernel-release",
                "x",
                "--target-root",
                root_arg,
            ],
            "registered already",
        ),
        (
            vec![
                "target",
                "add",
                "--vmlinux",
                "/etc/passwd",
                "--target-root",
                root_arg,
            ],
            "only paths under the target root",
        ),
        (
            vec!["target", "add", "--vmlinux", "vmlinux"],
            "none is configured",
        ),
        (
            vec!["target", "add", "--release", "6.1.0-999-amd64"],
            "has no linux-image-6.1.0-999-amd64-dbg",
        ),
        (
            vec!["target", "retire", "nothing"],
            "there is no target named nothing",
        ),
    ] {
        let out = graftbench(&data, &args, "");
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let retired = graftbench(&data, &["target", "retire", "fixture"], "");
    assert!(retired.status.success(), "{}", text(&retired.stderr));
    assert!(text(&graftbench(&data, &["target", "list"], "").stdout).contains("(retired)"));
    let verified = graftbench(&data, &["audit", "verify"], "");
    assert!(verified.status.success(), "{}", text(&verified.stderr));
}

#[test]
fn analyze_refuses_a_configuration_that_is_not_one_before_any_indexing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let source = dir.path().join("src");
    std::fs::create_dir_all(source.join("kernel")).unwrap();
    std::fs::write(
        source.join("kernel/a.c"),
        "int a(void)\n{\n\treturn 0;\n}\n",
    )
    .unwrap();
    let fix = dir.path().join("fix.patch");
    std::fs::write(
        &fix,
        "--- a/kernel/a.c\n+++ b/kernel/a.c\n@@ -3,1 +3,1 @@\n-\treturn 0;\n+\treturn 1;\n",
    )
    .unwrap();
    let not_a_config = dir.path().join("notes.txt");
    std::fs::write(&not_a_config, "hello\n").unwrap();
    let malformed = dir.path().join("bad.config");
    std::fs::write(&malformed, "CONFIG_A=y\nCONFIG_B=y trailing\n").unwrap();
    for (config, says) in [
        (&not_a_config, "no CONFIG_ symbol is set"),
        (&malformed, "line 2"),
        (&dir.path().join("missing"), "missing"),
    ] {
        let out = graftbench(
            &data,
            &[
                "analyze",
                "--index",
                arg(&dir.path().join("no-index-needed")),
                "--source",
                arg(&source),
                "--config",
                arg(config),
                arg(&fix),
            ],
            "",
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.starts_with("error: --config: kernel configuration "),
            "{stderr}"
        );
        assert!(stderr.contains(says), "{stderr}");
        assert!(
            !data.join("source-indexes").exists(),
            "nothing indexed: {stderr}"
        );
    }
}
