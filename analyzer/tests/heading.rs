//! Without the target's source: each hunk's heading checked against where the gcc-built
//! fixtures' debug information has its function.

mod common;

use analyzer::heading::{check_against_index, HunkVerdict};
use analyzer::index::{KernelIndex, ObjectIndex};
use analyzer::patch;
use common::Build;
use std::sync::OnceLock;

fn index() -> &'static KernelIndex {
    static INDEX: OnceLock<KernelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let image = Build::compile(5).vmlinux();
        KernelIndex {
            objects: vec![ObjectIndex::build("vmlinux", &image, &|_| {}).expect("index")],
        }
    })
}

/// The verdict on a one-hunk fix of clones.c: `header` is the `@@ ... @@ heading` line.
fn verdict(header: &str, body: &str) -> HunkVerdict {
    let path = "analyzer/tests/fixtures/clones.c";
    let text = format!("--- a/{path}\n+++ b/{path}\n{header}\n{body}");
    let fix = patch::parse(text.as_bytes()).expect("diff");
    let mut checks = check_against_index(&fix, index()).expect("check");
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].path, path);
    checks.remove(0).verdict
}

const REQ_LEN_BODY: &str = " {\n-\treturn r->len * 3 + 1;\n+\treturn r->len * 3 + 2;\n }\n";

#[test]
fn a_hunk_under_its_functions_heading_is_consistent() {
    assert_eq!(
        verdict(
            "@@ -11,3 +11,3 @@ static noinline int req_len(struct req *r)",
            REQ_LEN_BODY
        ),
        HunkVerdict::Consistent {
            function: "req_len".into()
        }
    );
}

#[test]
fn a_hunk_whose_heading_names_a_function_far_from_its_lines_does_not_match_this_build() {
    // As if written for a tree where validate() came before line 11: here it is at 56.
    let found = verdict("@@ -11,3 +11,3 @@ int validate(int v)", REQ_LEN_BODY);
    let HunkVerdict::Inconsistent {
        expected,
        found,
        why,
    } = found
    else {
        panic!("{found:?}");
    };
    assert_eq!(expected, "validate");
    assert_eq!(found, ["req_len"]);
    assert!(why.contains("clones.c:56"), "{why}");
    assert!(why.contains("below the hunk's line 11"), "{why}");
    assert!(!HunkVerdict::Inconsistent {
        expected,
        found,
        why
    }
    .analysed());
}

#[test]
fn a_function_declared_between_the_heading_and_the_hunk_does_not_match() {
    // use_req() (line 14) sits between req_len() (line 10) and line 17.
    let found = verdict(
        "@@ -17,3 +17,3 @@ static noinline int req_len(struct req *r)",
        " static noinline int drop_flags(int v, int flags, int w)\n {\n-\treturn v * 5 + w;\n+\treturn v * 5 + w + 1;\n",
    );
    let HunkVerdict::Inconsistent { found, why, .. } = &found else {
        panic!("{found:?}");
    };
    assert_eq!(found, &["use_req"]);
    assert!(why.contains("between it and the hunk's line 17"), "{why}");
}

#[test]
fn a_change_in_a_function_that_starts_inside_the_hunk_is_consistent() {
    // git heads a hunk with the definition above its first line: req_len(), although
    // use_req() and drop_flags() start within the hunk, and the change is in the latter.
    assert_eq!(
        verdict(
            "@@ -14,6 +14,6 @@ static noinline int req_len(struct req *r)",
            " int use_req(struct req *r) { return req_len(r) + req_len(r + 1); }\n \n /* IPA-SRA removing a parameter nobody reads. */\n static noinline int drop_flags(int v, int flags, int w)\n {\n-\treturn v * 5 + w;\n+\treturn v * 5 + w + 1;\n",
        ),
        HunkVerdict::Consistent {
            function: "req_len".into()
        }
    );
}

#[test]
fn without_a_heading_or_with_one_that_is_not_a_function_the_check_is_unknown() {
    let unknown = |v: HunkVerdict| matches!(v, HunkVerdict::Unknown { .. });
    assert!(unknown(verdict("@@ -12 +12 @@", "-a\n+b\n")));
    assert!(unknown(verdict("@@ -7 +7 @@ struct req {", "-a\n+b\n")));
    // A function this build does not have in the file: not built, or another tree.
    let v = verdict("@@ -12 +12 @@ static int not_here(void)", "-a\n+b\n");
    let HunkVerdict::Unknown { why } = &v else {
        panic!("{v:?}")
    };
    assert!(why.contains("not_here"), "{why}");
    assert!(v.analysed());
}

#[test]
fn a_hunk_that_shows_a_definition_where_this_build_has_none_does_not_match() {
    // An insertion between req_len() and use_req(), written for a tree one line shorter
    // above it: its heading is right and its lines fall in req_len(), but it shows
    // use_req()'s definition at line 13, and this build declares use_req() at 14.
    let found = verdict(
        "@@ -11,3 +11,4 @@ static noinline int req_len(struct req *r)",
        " \treturn r->len * 3 + 1;\n }\n+int added;\n int use_req(struct req *r) { return req_len(r) + req_len(r + 1); }\n",
    );
    let HunkVerdict::Inconsistent { found, why, .. } = &found else {
        panic!("{found:?}");
    };
    assert_eq!(found, &["use_req"]);
    assert!(why.contains("clones.c:13"), "{why}");
    assert!(why.contains("declares it at line 14"), "{why}");
    // Where this build has it, the same hunk matches.
    assert!(matches!(
        verdict(
            "@@ -12,3 +12,4 @@ static noinline int req_len(struct req *r)",
            " \treturn r->len * 3 + 1;\n }\n+int added;\n int use_req(struct req *r) { return req_len(r) + req_len(r + 1); }\n",
        ),
        HunkVerdict::Consistent { .. }
    ));
}
