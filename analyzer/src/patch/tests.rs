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
    // A quote and a non-ASCII name, which git writes in octal; a control character such
    // as `\t` is refused (see `control_characters_in_paths_are_refused`).
    let name = r#""a/dir/sp ace \"q\" caf\303\251.c""#;
    let other = name.replacen("a/", "b/", 1);
    let input =
        format!("diff --git {name} {other}\n--- {name}\n+++ {other}\n@@ -1 +1 @@\n-a\n+b\n");
    let patch = parse(input.as_bytes()).unwrap();
    assert_eq!(patch.files[0].path(), "dir/sp ace \"q\" café.c");
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

// --- Bounds, refused shapes and worst-case input sizes -----------------------------------

/// The backend's request body limit (`MAX_BODY_BYTES`): the most a submission can be.
const BODY_LIMIT: usize = 12 * 1024 * 1024;

/// `--- a/x.c` / `+++ b/x.c` and a one-line hunk, for inputs that need a file to follow.
const SMALL_FILE: &str = "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n";

/// What `unquoted_split` replaced: the pairwise comparison at every space. Kept as the
/// specification its replacement must agree with; only ever run on short inputs.
fn pairwise_split(text: &str) -> Option<usize> {
    let splits: Vec<usize> = text.match_indices(' ').map(|(i, _)| i).collect();
    splits
        .iter()
        .find(|&&i| strip_first_component(&text[..i]) == strip_first_component(&text[i + 1..]))
        .or_else(|| splits.first())
        .copied()
}

#[test]
fn unquoted_split_agrees_with_the_pairwise_search() {
    // Every string of up to 8 characters over the characters that matter.
    let alphabet = [' ', '/', 'a', 'b'];
    let mut checked = 0;
    for len in 0..=8u32 {
        for mut n in 0..alphabet.len().pow(len) {
            let mut text = String::new();
            for _ in 0..len {
                text.push(alphabet[n % alphabet.len()]);
                n /= alphabet.len();
            }
            assert_eq!(unquoted_split(&text), pairwise_split(&text), "{text:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 87_381);
}

#[test]
fn unquoted_names_that_differ_split_at_the_first_space() {
    assert_eq!(
        split_git_header_paths(b"a/x y b/z w"),
        Some(("a/x".to_owned(), "y b/z w".to_owned()))
    );
    assert_eq!(
        split_git_header_paths(b"a/old.c b/new.c"),
        Some(("a/old.c".to_owned(), "b/new.c".to_owned()))
    );
    assert_eq!(split_git_header_paths(b"a/no-space"), None);
}

#[test]
fn worst_git_header_shapes_at_the_body_limit() {
    // `a/x b/x b/x ...`: the shape of the report. Refused by its length alone.
    let header = format!("diff --git a/x{}\n", " b/x".repeat((BODY_LIMIT - 15) / 4));
    assert!(header.len() <= BODY_LIMIT && header.len() > BODY_LIMIT - 4);
    match parse(header.as_bytes()).unwrap_err() {
        PatchError::GitHeaderTooLong {
            line, len, limit, ..
        } => assert_eq!(
            (line, len, limit),
            (1, header.len() - 1, MAX_GIT_HEADER_BYTES)
        ),
        other => panic!("unexpected {other:?}"),
    }
    // Spaces and no slash: each pairwise comparison scans the whole line, the shape that
    // made the old search quadratic (40 s for 1 MiB).
    let header = format!("diff --git x{}\r\n", " x".repeat((BODY_LIMIT - 14) / 2));
    assert!(matches!(
        parse(header.as_bytes()).unwrap_err(),
        PatchError::GitHeaderTooLong { line: 1, .. }
    ));

    // The split itself, without the line bound in front of it, on the same shapes.
    // An even number of names: the middle space makes both halves `x b/x ... b/x`.
    let names = 3 * 1024 * 1024;
    let text = format!("a/x{}", " b/x".repeat(names - 1));
    let (old, new) = split_git_header_paths(text.as_bytes()).unwrap();
    assert_eq!(old.len(), "a/x".len() + " b/x".len() * (names / 2 - 1));
    assert_eq!(strip_first_component(&old), strip_first_component(&new));
    // An odd number: no split makes the halves equal, so the first space.
    let text = format!("a/x{}", " b/x".repeat(names));
    let (old, new) = split_git_header_paths(text.as_bytes()).unwrap();
    assert_eq!((old.as_str(), new.len()), ("a/x", text.len() - 4));
    let words = 6 * 1024 * 1024;
    let text = format!("x{}", " x".repeat(words - 1));
    let (old, new) = split_git_header_paths(text.as_bytes()).unwrap();
    assert_eq!((old.len(), old == new), (words - 1, true));
    let text = format!("x{}", " x".repeat(words));
    let (old, _) = split_git_header_paths(text.as_bytes()).unwrap();
    assert_eq!(old, "x");
}

#[test]
fn git_header_paths_at_and_just_over_the_path_limit() {
    // Names with spaces, as long as a name may be (`a/` and 4,094 bytes) and one byte more.
    let name = |len: usize| {
        let mut name = "x ".repeat(len / 2);
        name.truncate(len);
        name.replace_range(len - 1.., "x");
        name
    };
    let at = name(MAX_PATH_BYTES - 2);
    let input = format!("diff --git a/{at} b/{at}\nold mode 100644\nnew mode 100755\n");
    let patch = parse(input.as_bytes()).unwrap();
    assert_eq!(patch.files[0].path(), at);
    let over = name(MAX_PATH_BYTES - 1);
    let input = format!("diff --git a/{over} b/{over}\nold mode 100644\nnew mode 100755\n");
    assert!(input.len() < MAX_GIT_HEADER_BYTES);
    match parse(input.as_bytes()).unwrap_err() {
        PatchError::PathTooLong {
            line,
            len,
            limit,
            text,
        } => {
            assert_eq!((line, len, limit), (1, MAX_PATH_BYTES + 1, MAX_PATH_BYTES));
            assert_eq!(text.chars().count(), QUOTE_LIMIT + 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn worst_git_headers_within_the_bounds_repeated_to_the_body_limit() {
    // The no-slash shape as long as the bounds allow, as many times as fits: each header
    // is accepted and split at its middle.
    let half = vec!["x"; MAX_PATH_BYTES / 2].join(" ");
    let one = format!("diff --git {half} {half}\nold mode 100644\nnew mode 100755\n");
    let count = BODY_LIMIT / one.len();
    let patch = parse(one.repeat(count).as_bytes()).unwrap();
    assert_eq!(patch.files.len(), count);
    assert!(patch.files.iter().all(|f| f.path() == half));
}

#[test]
fn many_git_files_with_short_bodies_at_the_body_limit() {
    let one = "diff --git a/x b/x\nindex 1111111..2222222 100644\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
    let count = BODY_LIMIT / one.len();
    let patch = parse(one.repeat(count).as_bytes()).unwrap();
    assert_eq!(patch.format, PatchFormat::GitDiff);
    assert_eq!(
        patch.stats(),
        PatchStats {
            files: count,
            added: count,
            removed: count
        }
    );
}

#[test]
fn mail_with_a_huge_folded_subject() {
    let fold = " folded\n";
    let folds = BODY_LIMIT / fold.len();
    let input = format!(
        "From 0123456789abcdef0123456789abcdef01234567 Mon Sep 17 00:00:00 2001\n\
         From: A <a@example.org>\nSubject: [PATCH] x\n{}\nmessage\n---\n{SMALL_FILE}",
        fold.repeat(folds)
    );
    let patch = parse(input.as_bytes()).unwrap();
    let subject = patch.mail.unwrap().subject.unwrap();
    assert_eq!(subject.len(), 1 + folds * " folded".len());
    assert!(subject.starts_with("x folded folded"));
    assert_eq!(patch.files.len(), 1);
}

#[test]
fn hunk_with_a_million_context_lines() {
    let lines = 1_000_000;
    let mut input = format!("--- a/x.c\n+++ b/x.c\n@@ -1,{lines} +1,{} @@\n", lines + 1);
    input.push_str(&" context\n".repeat(lines / 2));
    input.push_str("+added\n");
    input.push_str(&" context\n".repeat(lines / 2));
    assert!(input.len() > 8 * 1024 * 1024);
    let patch = parse(input.as_bytes()).unwrap();
    let hunk = &patch.files[0].hunks[0];
    assert_eq!(hunk.lines.len(), lines + 1);
    let last = hunk.lines.last().unwrap();
    assert_eq!(
        (last.old_line, last.new_line),
        (Some(lines as u32), Some(lines as u32 + 1))
    );
}

#[test]
fn git_header_longer_than_the_limit_is_refused() {
    let line_of = |len: usize| {
        let mut line = format!("diff --git a/x{}", " b/x".repeat(len / 4));
        line.truncate(len);
        line
    };
    // At the limit, and at the limit with a CR: the line is not refused for its length
    // (its names are, being longer than a path may be).
    for end in ["\n", "\r\n"] {
        let input = format!("{}{end}", line_of(MAX_GIT_HEADER_BYTES));
        assert!(matches!(
            parse(input.as_bytes()).unwrap_err(),
            PatchError::PathTooLong { line: 1, .. }
        ));
    }
    let line = line_of(MAX_GIT_HEADER_BYTES + 1);
    let input = format!("{SMALL_FILE}{line}\n{SMALL_FILE}");
    let err = parse(input.as_bytes()).unwrap_err();
    let expected_text = format!("{}…", &line[..QUOTE_LIMIT]);
    assert_eq!(
        err,
        PatchError::GitHeaderTooLong {
            line: 6,
            len: MAX_GIT_HEADER_BYTES + 1,
            limit: MAX_GIT_HEADER_BYTES,
            text: expected_text.clone(),
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "line 6: a `diff --git` line of 8257 bytes is longer than the limit of 8256 bytes: `{expected_text}`"
        )
    );
}

#[test]
fn paths_longer_than_the_limit_are_refused() {
    let long = "d/".repeat(MAX_PATH_BYTES / 2) + "x";
    // `---` names are bounded as written, prefix included; at the bound they are accepted.
    let at = &long[..MAX_PATH_BYTES - 2];
    let input = format!("--- a/{at}\n+++ b/{at}\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(parse(input.as_bytes()).unwrap().files[0].path(), at);
    let input = format!("--- a/{at}x\n+++ b/{at}x\n@@ -1 +1 @@\n-a\n+b\n");
    let err = parse(input.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        PatchError::PathTooLong {
            line: 1,
            len: MAX_PATH_BYTES + 1,
            limit: MAX_PATH_BYTES,
            text: format!("a/{}…", &long[..QUOTE_LIMIT - 2]),
        }
    );
    assert_eq!(
        err.to_string(),
        format!(
            "line 1: a path of 4097 bytes is longer than the limit of 4096 bytes: `a/{}…`",
            &long[..QUOTE_LIMIT - 2]
        )
    );
    // Names without a prefix, after unquoting.
    let input = format!(
        "diff --git a/x b/y\nsimilarity index 100%\nrename from {}\nrename to y\n",
        &long[..MAX_PATH_BYTES + 1]
    );
    assert!(matches!(
        parse(input.as_bytes()).unwrap_err(),
        PatchError::PathTooLong {
            line: 3,
            len: 4097,
            ..
        }
    ));
    // A prefix that is thrown away is still bounded.
    let input = format!(
        "--- {}/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n",
        "a".repeat(5000)
    );
    assert!(matches!(
        parse(input.as_bytes()).unwrap_err(),
        PatchError::PathTooLong { line: 1, .. }
    ));
}

#[test]
fn a_git_file_that_changes_nothing_is_refused() {
    for (body, line) in [
        ("diff --git a/x.c b/x.c\n", 1),
        ("diff --git a/x.c b/x.c\nindex 0123456..789abcd 100644\n", 1),
        // Followed by another file: the empty one is still refused, by its own line.
        (
            "diff --git a/y.c b/y.c\nold mode 100644\nnew mode 100755\n\
             diff --git a/x.c b/x.c\nindex 0123456..789abcd 100644\n\
             diff --git a/z.c b/z.c\n--- a/z.c\n+++ b/z.c\n@@ -1 +1 @@\n-a\n+b\n",
            4,
        ),
        // A mode "change" to the same mode.
        (
            "diff --git a/x.c b/x.c\nold mode 100644\nnew mode 100644\n",
            1,
        ),
    ] {
        assert_eq!(
            parse(body.as_bytes()).unwrap_err(),
            PatchError::EmptyFileDiff {
                line,
                path: "x.c".into()
            },
            "{body}"
        );
    }
    assert_eq!(
        parse(b"diff --git a/x.c b/x.c\n").unwrap_err().to_string(),
        "line 1: `diff --git` for `x.c` changes nothing: no hunks, no mode change, \
         no rename or copy, not a new or deleted file"
    );
}

#[test]
fn git_files_without_hunks_that_change_something_are_accepted() {
    let cases: [(&str, FileChange, Option<&str>, Option<&str>); 5] = [
        (
            "diff --git a/old.c b/new.c\nrename from old.c\nrename to new.c\n",
            FileChange::Renamed { similarity: None },
            Some("old.c"),
            Some("new.c"),
        ),
        (
            "diff --git a/old.c b/new.c\nsimilarity index 100%\ncopy from old.c\ncopy to new.c\n",
            FileChange::Copied {
                similarity: Some(100),
            },
            Some("old.c"),
            Some("new.c"),
        ),
        (
            "diff --git a/x.sh b/x.sh\nold mode 100644\nnew mode 100755\n",
            FileChange::Modified,
            Some("x.sh"),
            Some("x.sh"),
        ),
        (
            "diff --git a/empty b/empty\nnew file mode 100644\nindex 0000000..e69de29\n",
            FileChange::Added,
            None,
            Some("empty"),
        ),
        (
            "diff --git a/empty b/empty\ndeleted file mode 100644\nindex e69de29..0000000\n",
            FileChange::Deleted,
            Some("empty"),
            None,
        ),
    ];
    for (input, change, old, new) in cases {
        let patch = parse(input.as_bytes()).unwrap();
        let file = &patch.files[0];
        assert_eq!(
            (
                file.change,
                file.old_path.as_deref(),
                file.new_path.as_deref()
            ),
            (change, old, new),
            "{input}"
        );
        assert!(file.hunks.is_empty());
    }
}

#[test]
fn backslashes_in_paths_are_refused() {
    for (input, line) in [
        ("--- a/dir\\x.c\n+++ b/dir\\x.c\n@@ -1 +1 @@\n-a\n+b\n", 1),
        // git writes a backslash in a name quoted, as `\\`.
        (
            "diff --git \"a/x\\\\y.c\" \"b/x\\\\y.c\"\nold mode 100644\nnew mode 100755\n",
            1,
        ),
        (
            "diff --git a/x.c b/y.c\nrename from x.c\nrename to ..\\y.c\n",
            3,
        ),
    ] {
        match parse(input.as_bytes()).unwrap_err() {
            PatchError::UnsafePath {
                line: at, problem, ..
            } => assert_eq!((at, problem), (line, PathProblem::Backslash), "{input}"),
            other => panic!("{input}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        parse(b"--- a/dir\\x.c\n+++ b/dir\\x.c\n@@ -1 +1 @@\n-a\n+b\n")
            .unwrap_err()
            .to_string(),
        "line 1: path `dir\\x.c` has a backslash: paths in the kernel tree use `/` and have no `\\`"
    );
}

#[test]
fn control_characters_in_paths_are_refused() {
    for (input, line, c) in [
        // Quoted by git, after unquoting: escape, tab, DEL, and C1 CSI (`\302\233`).
        (
            "diff --git \"a/x\\033[2Jy.c\" \"b/x\\033[2Jy.c\"\nold mode 100644\nnew mode 100755\n",
            1,
            '\u{1b}',
        ),
        (
            "--- \"a/x\\ty.c\"\n+++ \"b/x\\ty.c\"\n@@ -1 +1 @@\n-a\n+b\n",
            1,
            '\t',
        ),
        (
            "--- a/x.c\n+++ \"b/x\\177.c\"\n@@ -1 +1 @@\n-a\n+b\n",
            2,
            '\u{7f}',
        ),
        (
            "diff --git a/x.c b/y.c\ncopy from x.c\ncopy to \"y\\302\\233.c\"\n",
            3,
            '\u{9b}',
        ),
        // Unquoted, as a hand-made diff could have it.
        (
            "--- a/x\u{1}.c\n+++ b/x\u{1}.c\n@@ -1 +1 @@\n-a\n+b\n",
            1,
            '\u{1}',
        ),
    ] {
        match parse(input.as_bytes()).unwrap_err() {
            PatchError::UnsafePath {
                line: at, problem, ..
            } => assert_eq!(
                (at, problem),
                (line, PathProblem::ControlCharacter(c)),
                "{input:?}"
            ),
            other => panic!("{input:?}: unexpected {other:?}"),
        }
    }
    // The message names the character and shows the path with it escaped.
    let message = parse(
        b"diff --git \"a/x\\033[2Jy.c\" \"b/x\\033[2Jy.c\"\nold mode 100644\nnew mode 100755\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "line 1: path `x\\u{1b}[2Jy.c` has the control character U+001B: \
         paths in the kernel tree have none"
    );
    assert!(!message.chars().any(char::is_control));
}

#[test]
fn hunk_ranges_past_u32_max_are_refused() {
    for header in [
        "@@ -4294967295,5 +1,5 @@",
        "@@ -1,5 +4294967295,5 @@",
        "@@ -4294967295 +1 @@",
        "@@ -4294967291,5 +1,5 @@",
    ] {
        let body = " a\n".repeat(5);
        let input = format!("--- a/x.c\n+++ b/x.c\n{header}\n{body}");
        assert_eq!(
            parse(input.as_bytes()).unwrap_err(),
            PatchError::HunkRangeOverflow {
                line: 3,
                text: header.into()
            },
            "{header}"
        );
    }
    assert_eq!(
        parse(b"--- a/x.c\n+++ b/x.c\n@@ -4294967295,5 +1,5 @@\n")
            .unwrap_err()
            .to_string(),
        "line 3: hunk header `@@ -4294967295,5 +1,5 @@` reaches past line 4294967295: \
         START + COUNT must be at most that"
    );
    // Up to the last line number is fine, and so is an empty side that starts there.
    let input = format!(
        "--- a/x.c\n+++ b/x.c\n@@ -4294967290,5 +1,5 @@\n{}",
        " a\n".repeat(5)
    );
    let patch = parse(input.as_bytes()).unwrap();
    let last = patch.files[0].hunks[0].lines.last().unwrap();
    assert_eq!(
        (last.old_line, last.new_line),
        (Some(u32::MAX - 1), Some(5))
    );
    let patch = parse(b"--- a/x.c\n+++ b/x.c\n@@ -4294967295,0 +1 @@\n+a\n").unwrap();
    assert_eq!(patch.files[0].hunks[0].lines[0].new_line, Some(1));
}

#[test]
fn error_quotes_escape_control_characters() {
    let err = parse(b"--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@ \x1b[2J\x07\n-a\n+b\n");
    // A section is free text: this one parses, and its escape stays in the model...
    assert_eq!(err.unwrap().files[0].hunks[0].section, "\u{1b}[2J\u{7}");
    // ...but a line quoted back in an error shows it escaped.
    let err = parse(b"--- a/x.c\n+++ b/x.c\n@@ -1 +\x1b @@\n-a\n+b\n").unwrap_err();
    assert_eq!(
        err,
        PatchError::MalformedHunkHeader {
            line: 3,
            text: "@@ -1 +\\u{1b} @@".into()
        }
    );
    let err = parse(b"diff -ur a/x b/x\nBinary files a/x\x1b and b/fw/x\x1b differ\n").unwrap_err();
    assert_eq!(
        err,
        PatchError::Binary {
            line: 2,
            path: "fw/x\\u{1b}".into()
        }
    );
}

#[test]
fn the_index_line_names_the_original_blob() {
    let diff = |index: &str| {
        format!("diff --git a/x.c b/x.c\n{index}--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n")
    };
    let blob = |index: &str| {
        parse(diff(index).as_bytes()).unwrap().files[0]
            .old_blob
            .clone()
    };
    assert_eq!(
        blob("index 0123ABc..789abcd 100644\n").as_deref(),
        Some("0123abc")
    );
    assert_eq!(blob("index 0123abc..789abcd\n").as_deref(), Some("0123abc"));
    // No line, git's id of a file that did not exist, or no id at all: unknown.
    for index in [
        "",
        "index 0000000..789abcd\n",
        "index ..1234567\n",
        "index zz..1234567\n",
    ] {
        assert_eq!(blob(index), None, "{index:?}");
    }
    let file = |index: &str| parse(diff(index).as_bytes()).unwrap().files.remove(0);
    let short = file("index 0123abc..789abcd 100644\n");
    let long = file("index 0123abcdef..789abcd 100644\n");
    let other = file("index 0123abd..789abcd 100644\n");
    let unknown = file("");
    assert!(short.same_original_as(&long) && long.same_original_as(&short));
    assert!(!short.same_original_as(&other));
    assert!(unknown.same_original_as(&other) && other.same_original_as(&unknown));
}
