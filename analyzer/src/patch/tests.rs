use super::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn texts(hunk: &Hunk, kind: LineKind) -> Vec<&str> {
    hunk.lines
        .iter()
        .filter(|l| l.kind == kind)
        .map(|l| l.text.as_str())
        .collect()
}

#[test]
fn format_patch_mail_header_and_message() {
    let patch = parse(&fixture("format-patch-multi.patch")).unwrap();
    assert_eq!(patch.format, PatchFormat::Mail);
    let mail = patch.mail.as_ref().unwrap();
    assert_eq!(
        mail.commit.as_deref(),
        Some("e07e0ff8968523efea441c20e5a7beb53cef19c5")
    );
    assert_eq!(mail.from.as_deref(), Some("Ada Kernel <ada@example.org>"));
    assert_eq!(
        mail.subject.as_deref(),
        Some("proc: cmdline: reject a missing command line")
    );
    assert!(mail.message.starts_with("Fixes a NULL dereference"));
    assert!(mail
        .message
        .ends_with("Signed-off-by: Ada Kernel <ada@example.org>"));
}

#[test]
fn format_patch_multi_file_kinds_and_paths() {
    let patch = parse(&fixture("format-patch-multi.patch")).unwrap();
    let summary: Vec<(Option<&str>, Option<&str>, FileChange)> = patch
        .files
        .iter()
        .map(|f| (f.old_path.as_deref(), f.new_path.as_deref(), f.change))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                Some("fs/proc/cmdline.c"),
                Some("fs/proc/cmdline.c"),
                FileChange::Modified
            ),
            (
                Some("include/linux/counter.h"),
                Some("include/linux/counter.h"),
                FileChange::Modified
            ),
            (None, Some("kernel/new_helper.c"), FileChange::Added),
            (
                Some("kernel/noeol.c"),
                Some("kernel/noeol.c"),
                FileChange::Modified
            ),
            (Some("kernel/old_helper.c"), None, FileChange::Deleted),
            (
                Some("kernel/renamed_src.c"),
                Some("kernel/renamed_dst.c"),
                FileChange::Renamed {
                    similarity: Some(96)
                }
            ),
        ]
    );
    assert_eq!(
        patch.stats(),
        PatchStats {
            files: 6,
            added: 11,
            removed: 7
        }
    );
    // The mail signature after the last hunk (`-- ` / `2.47.3`) is not content.
    let last = patch.files.last().unwrap().hunks.last().unwrap();
    assert_eq!(last.lines.last().unwrap().text, "int filler_6;");
}

#[test]
fn hunk_line_numbers_follow_both_sides() {
    let patch = parse(&fixture("format-patch-multi.patch")).unwrap();
    let hunk = &patch.files[0].hunks[0];
    assert_eq!(
        (
            hunk.old_start,
            hunk.old_lines,
            hunk.new_start,
            hunk.new_lines
        ),
        (7, 6, 7, 8)
    );
    assert_eq!(
        texts(hunk, LineKind::Added),
        ["\tif (!saved_command_line)", "\t\treturn -EINVAL;"]
    );
    let numbers: Vec<(Option<u32>, Option<u32>)> = hunk
        .lines
        .iter()
        .map(|l| (l.old_line, l.new_line))
        .collect();
    assert_eq!(
        numbers,
        vec![
            (Some(7), Some(7)),
            (Some(8), Some(8)),
            (Some(9), Some(9)),
            (None, Some(10)),
            (None, Some(11)),
            (Some(10), Some(12)),
            (Some(11), Some(13)),
            (Some(12), Some(14)),
        ]
    );
    assert_eq!(hunk.input_line, 25);
}

#[test]
fn no_newline_at_end_of_file_marks_the_line_before() {
    let patch = parse(&fixture("format-patch-multi.patch")).unwrap();
    let noeol = patch
        .files
        .iter()
        .find(|f| f.path() == "kernel/noeol.c")
        .unwrap();
    let lines = &noeol.hunks[0].lines;
    let marked: Vec<&str> = lines
        .iter()
        .filter(|l| l.no_newline_at_eof)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(marked, ["}"]);
    assert_eq!(lines.last().unwrap().kind, LineKind::Context);
}

#[test]
fn new_and_deleted_files_have_one_empty_side() {
    let patch = parse(&fixture("format-patch-multi.patch")).unwrap();
    let added = &patch.files[2];
    assert_eq!(added.new_mode.as_deref(), Some("100644"));
    let hunk = &added.hunks[0];
    assert_eq!(
        (
            hunk.old_start,
            hunk.old_lines,
            hunk.new_start,
            hunk.new_lines
        ),
        (0, 0, 1, 4)
    );
    let deleted = &patch.files[4];
    assert_eq!(deleted.old_mode.as_deref(), Some("100644"));
    assert_eq!(texts(&deleted.hunks[0], LineKind::Removed).len(), 4);
}

#[test]
fn pure_rename_and_mode_change_have_no_hunks() {
    let patch = parse(&fixture("format-patch-rename-mode.patch")).unwrap();
    assert_eq!(patch.files.len(), 2);
    let rename = &patch.files[0];
    assert_eq!(
        rename.change,
        FileChange::Renamed {
            similarity: Some(100)
        }
    );
    assert_eq!(rename.old_path.as_deref(), Some("kernel/new_helper.c"));
    assert_eq!(rename.new_path.as_deref(), Some("kernel/moved_helper.c"));
    assert!(rename.hunks.is_empty());
    let mode = &patch.files[1];
    assert_eq!(mode.change, FileChange::Modified);
    assert_eq!(mode.old_mode.as_deref(), Some("100644"));
    assert_eq!(mode.new_mode.as_deref(), Some("100755"));
}

#[test]
fn plain_unified_diff_with_timestamps() {
    let patch = parse(&fixture("plain-unified.patch")).unwrap();
    assert_eq!(patch.format, PatchFormat::Unified);
    assert!(patch.mail.is_none());
    assert_eq!(patch.files.len(), 1);
    assert_eq!(
        patch.files[0].old_path.as_deref(),
        Some("fs/proc/cmdline.c")
    );
    assert_eq!(
        patch.files[0].new_path.as_deref(),
        Some("fs/proc/cmdline.c")
    );
    assert_eq!(patch.files[0].change, FileChange::Modified);
    assert_eq!(
        texts(&patch.files[0].hunks[0], LineKind::Removed),
        ["\tseq_putc(m, '\\n');"]
    );
}

#[test]
fn git_binary_patch_is_refused() {
    let err = parse(&fixture("format-patch-binary.patch")).unwrap_err();
    assert_eq!(
        err,
        PatchError::Binary {
            line: 14,
            path: "kernel/blob.bin".into()
        }
    );
}

#[test]
fn binary_files_differ_notice_is_refused() {
    let input = b"diff -ur a/x.bin b/x.bin\nBinary files a/fw/x.bin and b/fw/x.bin differ\n";
    assert_eq!(
        parse(input).unwrap_err(),
        PatchError::Binary {
            line: 2,
            path: "fw/x.bin".into()
        }
    );
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(parse(b"").unwrap_err(), PatchError::Empty);
    assert_eq!(parse(b" \n\t\n").unwrap_err(), PatchError::Empty);
}

#[test]
fn text_without_file_headers_is_not_a_diff() {
    assert_eq!(
        parse(b"Hello,\nplease apply my fix.\n").unwrap_err(),
        PatchError::NotADiff
    );
}

#[test]
fn parent_directory_paths_are_refused() {
    let input = b"--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n";
    match parse(input).unwrap_err() {
        PatchError::UnsafePath { line, problem, .. } => {
            assert_eq!((line, problem), (1, PathProblem::ParentComponent))
        }
        other => panic!("unexpected {other:?}"),
    }
    let git = b"diff --git a/net/../../x b/net/../../x\n--- a/net/../../x\n+++ b/net/../../x\n@@ -1 +1 @@\n-a\n+b\n";
    assert!(matches!(
        parse(git).unwrap_err(),
        PatchError::UnsafePath {
            problem: PathProblem::ParentComponent,
            ..
        }
    ));
}

#[test]
fn absolute_paths_are_refused() {
    let input = b"--- /etc/shadow\n+++ /etc/shadow\n@@ -1 +1 @@\n-a\n+b\n";
    assert!(matches!(
        parse(input).unwrap_err(),
        PatchError::UnsafePath {
            line: 1,
            problem: PathProblem::Absolute,
            ..
        }
    ));
    let git = b"diff --git a//etc/x b//etc/x\nold mode 100644\nnew mode 100755\n";
    assert!(matches!(
        parse(git).unwrap_err(),
        PatchError::UnsafePath {
            line: 1,
            problem: PathProblem::Absolute,
            ..
        }
    ));
}

#[test]
fn malformed_hunk_headers_are_refused() {
    for header in [
        "@@ -1,x +1 @@",
        "@@ 1,1 +1,1 @@",
        "@@ -1,1 +1,1",
        "@@ -0,1 +1,1 @@",
        "@@ -1,0 +1,0 @@",
        "@@@ -1,1 -1,1 +1,1 @@@",
    ] {
        let input = format!("--- a/x.c\n+++ b/x.c\n{header}\n-a\n+b\n");
        assert_eq!(
            parse(input.as_bytes()).unwrap_err(),
            PatchError::MalformedHunkHeader {
                line: 3,
                text: header.into()
            },
            "{header}"
        );
    }
}

#[test]
fn hunk_shorter_than_its_header_is_refused() {
    let input = b"--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n";
    assert_eq!(
        parse(input).unwrap_err(),
        PatchError::TruncatedHunk {
            line: 7,
            hunk_line: 3,
            old_missing: 1,
            new_missing: 1
        }
    );
}

#[test]
fn hunk_before_any_file_header_is_refused() {
    assert_eq!(
        parse(b"@@ -1 +1 @@\n-a\n+b\n").unwrap_err(),
        PatchError::HunkOutsideFile { line: 1 }
    );
}

#[test]
fn file_header_without_hunks_is_refused() {
    assert_eq!(
        parse(b"--- a/x.c\n+++ b/x.c\n").unwrap_err(),
        PatchError::MissingHunks {
            line: 2,
            path: "x.c".into()
        }
    );
}

#[test]
fn a_series_of_mails_is_refused() {
    let mut two = fixture("format-patch-multi.patch");
    two.extend(fixture("format-patch-rename-mode.patch"));
    assert_eq!(parse(&two).unwrap_err(), PatchError::Series { count: 2 });
}

#[test]
fn empty_context_line_stripped_by_a_mailer_counts_as_context() {
    let input = b"--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n";
    let patch = parse(input).unwrap();
    let hunk = &patch.files[0].hunks[0];
    assert_eq!(hunk.lines[1].kind, LineKind::Context);
    assert_eq!(hunk.lines[1].text, "");
}

#[test]
fn quoted_git_paths_are_unquoted() {
    let input = b"diff --git \"a/dir/sp ace\\tx.c\" \"b/dir/sp ace\\tx.c\"\n--- \"a/dir/sp ace\\tx.c\"\n+++ \"b/dir/sp ace\\tx.c\"\n@@ -1 +1 @@\n-a\n+b\n";
    let patch = parse(input).unwrap();
    assert_eq!(patch.files[0].path(), "dir/sp ace\tx.c");
}

#[test]
fn unquoted_git_paths_with_spaces_split_where_both_halves_match() {
    let input = b"diff --git a/my dir/x b.c b/my dir/x b.c\nold mode 100644\nnew mode 100755\n";
    let patch = parse(input).unwrap();
    assert_eq!(patch.files[0].path(), "my dir/x b.c");
}

#[test]
fn hunk_section_is_the_enclosing_function() {
    let input = b"--- a/x.c\n+++ b/x.c\n@@ -10,1 +10,1 @@ static int foo(int a)\n-a\n+b\n";
    let patch = parse(input).unwrap();
    assert_eq!(patch.files[0].hunks[0].section, "static int foo(int a)");
}

#[test]
fn non_utf8_content_is_kept_readable() {
    let input = b"--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-caf\xe9\n+cafe\n";
    let patch = parse(input).unwrap();
    assert_eq!(patch.files[0].hunks[0].lines[0].text, "caf\u{fffd}");
}

#[test]
fn errors_name_the_problem() {
    let err = parse(b"--- /etc/shadow\n+++ /etc/shadow\n@@ -1 +1 @@\n-a\n+b\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: path `/etc/shadow` is absolute: paths must be relative to the kernel tree"
    );
}
