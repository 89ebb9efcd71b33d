//! Mapping a fix onto the target's own source, as GNU `patch` would apply it: offsets,
//! fuzz, hunks already applied or nowhere, missing files, paths that leave the tree, and
//! the real case of a fix written for Linux 6.2 and a Debian 6.1.192 kernel.

use analyzer::impact::changed_lines;
use analyzer::onto::{map_onto, HunkState, Mapping};
use analyzer::patch;
use analyzer::source::{SourceDir, SourceError, SourceTree};
use std::path::Path;

/// A tree of `files` (path, text) in a temporary directory.
fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, SourceDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (path, text) in files {
        let at = dir.path().join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }
    let source = SourceDir::new(dir.path()).expect("source dir");
    (dir, source)
}

/// `count` numbered lines, `line 1` to `line N`, with `lines` replacing some.
fn numbered(count: usize, replaced: &[(usize, &str)]) -> String {
    (1..=count)
        .map(|n| {
            replaced
                .iter()
                .find(|(at, _)| *at == n)
                .map_or_else(|| format!("line {n}\n"), |(_, text)| format!("{text}\n"))
        })
        .collect()
}

fn map(diff: &str, source: &SourceDir) -> Mapping {
    map_onto(&patch::parse(diff.as_bytes()).expect("diff"), source).expect("mapping")
}

fn states(mapping: &Mapping) -> Vec<HunkState> {
    mapping.hunks.iter().map(|h| h.state).collect()
}

/// A fix for `k.c` changing `line {n}` with three lines of context each side, stated at
/// `at` (the first context line).
fn fix_at(at: u32, n: u32) -> String {
    format!(
        "--- a/k.c\n+++ b/k.c\n@@ -{at},7 +{at},7 @@\n line {}\n line {}\n line {}\n-line {n}\n+LINE {n}\n line {}\n line {}\n line {}\n",
        n - 3,
        n - 2,
        n - 1,
        n + 1,
        n + 2,
        n + 3
    )
}

#[test]
fn a_hunk_is_found_where_the_target_has_it_and_renumbered() {
    let (_dir, source) = tree(&[("k.c", &numbered(100, &[]))]);
    // Written for a tree where line 50 was at line 45.
    let mapping = map(&fix_at(42, 50), &source);
    assert_eq!(
        states(&mapping),
        [HunkState::Applied {
            offset: 5,
            fuzz: 0,
            target_line: 47
        }]
    );
    let changed = changed_lines(&mapping.patch);
    assert_eq!(changed[0].lines, [50]);
    let hunk = &mapping.patch.files[0].hunks[0];
    assert_eq!((hunk.old_start, hunk.new_start), (47, 47));
    assert_eq!(mapping.hunks[0].fix_line, 42);
}

#[test]
fn the_nearest_place_wins_and_later_hunks_move_with_earlier_ones() {
    // `line 20` twice: at 20 and (as text) at 70; the fix says 18, so 20 is nearer.
    let text = numbered(100, &[]);
    let (_dir, source) = tree(&[("k.c", &text)]);
    let diff = format!(
        "{}{}",
        fix_at(14, 20),
        // The second hunk as written is 10 lines too high; the first hunk's offset of
        // +3 alone brings it to 57, and it is found at 57, at offset +3.
        fix_at(54, 60)
            .split_once("@@")
            .map(|(_, h)| format!("@@{h}"))
            .unwrap()
    );
    let mapping = map(&diff, &source);
    assert_eq!(
        states(&mapping),
        [
            HunkState::Applied {
                offset: 3,
                fuzz: 0,
                target_line: 17
            },
            HunkState::Applied {
                offset: 3,
                fuzz: 0,
                target_line: 57
            }
        ]
    );
    assert_eq!(changed_lines(&mapping.patch)[0].lines, [20, 60]);
}

#[test]
fn changed_context_is_found_with_fuzz_and_ignored_context_is_no_evidence() {
    // The first and last context lines differ in the target: fuzz 1.
    let text = numbered(100, &[(47, "other 47"), (53, "other 53")]);
    let (_dir, source) = tree(&[("k.c", &text)]);
    let mapping = map(&fix_at(47, 50), &source);
    assert_eq!(
        states(&mapping),
        [HunkState::Applied {
            offset: 0,
            fuzz: 1,
            target_line: 47
        }]
    );
    let hunk = &mapping.patch.files[0].hunks[0];
    // The ignored lines are gone from the mapped hunk.
    assert_eq!((hunk.old_start, hunk.old_lines, hunk.new_lines), (48, 5, 5));
    assert!(hunk.lines.iter().all(|l| !l.text.contains("47")));

    // Two lines differ at each end: fuzz 2.
    let text = numbered(100, &[(47, "x"), (48, "x"), (52, "y"), (53, "y")]);
    let (_dir, source) = tree(&[("k.c", &text)]);
    let mapping = map(&fix_at(40, 50), &source);
    assert_eq!(
        states(&mapping),
        [HunkState::Applied {
            offset: 7,
            fuzz: 2,
            target_line: 47
        }]
    );
    assert_eq!(changed_lines(&mapping.patch)[0].lines, [50]);

    // Three: more than `patch` accepts.
    let text = numbered(100, &[(47, "x"), (48, "x"), (49, "x")]);
    let (_dir, source) = tree(&[("k.c", &text)]);
    assert_eq!(
        states(&map(&fix_at(47, 50), &source)),
        [HunkState::NotFound]
    );
}

#[test]
fn an_insertion_next_to_ignored_context_keeps_only_the_lines_that_matched() {
    // The fix adds `new` between two blank lines, with `line 48` and `line 51` around
    // them; the target has other text there, so it applies with fuzz 1. Only blank lines
    // are left around the insertion: with nothing that holds code among the lines that
    // matched, its two neighbours count, never the ignored lines 48 and 51.
    let text = numbered(
        100,
        &[(48, "changed 48"), (49, ""), (50, ""), (51, "changed 51")],
    );
    let (_dir, source) = tree(&[("k.c", &text)]);
    let diff = "--- a/k.c\n+++ b/k.c\n@@ -48,4 +48,5 @@\n line 48\n \n+new\n \n line 51\n";
    let mapping = map(diff, &source);
    assert_eq!(
        states(&mapping),
        [HunkState::Applied {
            offset: 0,
            fuzz: 1,
            target_line: 48
        }]
    );
    assert_eq!(changed_lines(&mapping.patch)[0].lines, [49, 50]);
    // As written, the hunk's own context would have given 48 and 51.
    let fix = patch::parse(diff.as_bytes()).unwrap();
    assert_eq!(changed_lines(&fix)[0].lines, [48, 51]);
}

#[test]
fn a_fix_already_in_the_target_is_reported_and_not_mapped() {
    let text = numbered(100, &[(50, "LINE 50")]);
    let (_dir, source) = tree(&[("k.c", &text)]);
    let mapping = map(&fix_at(40, 50), &source);
    assert_eq!(states(&mapping), [HunkState::AlreadyApplied { at: 47 }]);
    assert!(mapping.patch.files.is_empty());
    assert!(changed_lines(&mapping.patch).is_empty());
}

#[test]
fn a_hunk_nowhere_in_the_target_and_a_missing_file_are_not_mapped() {
    let (_dir, source) = tree(&[("k.c", &numbered(100, &[]))]);
    let diff = format!(
        "{}--- a/gone.c\n+++ b/gone.c\n@@ -3 +3 @@\n-a\n+b\n",
        fix_at(200, 210)
    );
    let mapping = map(&diff, &source);
    assert_eq!(
        states(&mapping),
        [HunkState::NotFound, HunkState::FileMissing]
    );
    assert_eq!(mapping.hunks[1].path, "gone.c");
    assert!(mapping.patch.files.is_empty());
}

#[test]
fn a_hunk_at_the_start_of_its_file_only_matches_the_start() {
    // One line of leading context (the file's first line), three trailing.
    let diff = "--- a/k.c\n+++ b/k.c\n@@ -1,5 +1,5 @@\n line 1\n-line 2\n+LINE 2\n line 3\n line 4\n line 5\n";
    let (_dir, source) = tree(&[("k.c", &numbered(10, &[]))]);
    assert_eq!(
        states(&map(diff, &source)),
        [HunkState::Applied {
            offset: 0,
            fuzz: 0,
            target_line: 1
        }]
    );
    // The same lines lower in the target's file: not at its start, so not with fuzz 0 or
    // 1; with fuzz 2 the leading context counts for nothing and it is found.
    let text = format!("extra\n{}", numbered(10, &[]));
    let (_dir, source) = tree(&[("k.c", &text)]);
    assert_eq!(
        states(&map(diff, &source)),
        [HunkState::Applied {
            offset: 1,
            fuzz: 2,
            target_line: 2
        }]
    );
}

#[test]
fn a_new_file_is_new_unless_the_target_has_it() {
    let diff = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+a\n+b\n";
    let (_dir, source) = tree(&[("k.c", "x\n")]);
    let mapping = map(diff, &source);
    assert_eq!(states(&mapping), [HunkState::NewFile]);
    assert_eq!(mapping.patch.files.len(), 1);
    let (_dir, source) = tree(&[("new.c", "a\nb\n")]);
    assert_eq!(
        states(&map(diff, &source)),
        [HunkState::AlreadyApplied { at: 1 }]
    );
}

#[test]
fn paths_that_leave_the_tree_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.c"), "secret\n").unwrap();
    let (dir, source) = tree(&[("k.c", "x\n")]);
    std::os::unix::fs::symlink(outside.path().join("secret.c"), dir.path().join("link.c")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linkdir")).unwrap();
    for path in [
        "../secret.c",
        "a/../../secret.c",
        "/etc/passwd",
        "link.c",
        "linkdir/secret.c",
    ] {
        assert!(
            matches!(source.read(path), Err(SourceError::OutsideTree { .. })),
            "{path}: {:?}",
            source.read(path)
        );
    }
    // A link inside the tree is followed; a file that is not there is `None`.
    std::os::unix::fs::symlink(dir.path().join("k.c"), dir.path().join("inside.c")).unwrap();
    assert_eq!(source.read("inside.c").unwrap(), Some(b"x\n".to_vec()));
    assert_eq!(source.read("none.c").unwrap(), None);
    // A fix naming a link out of the tree is an error, not a silent miss.
    let diff = "--- a/link.c\n+++ b/link.c\n@@ -1 +1 @@\n-secret\n+x\n";
    let error = map_onto(&patch::parse(diff.as_bytes()).unwrap(), &source).unwrap_err();
    assert_eq!(
        error.to_string(),
        "source path `link.c` resolves outside the source tree"
    );
}

#[test]
fn bytes_that_are_not_utf8_are_compared_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("k.c"), b"a\n\xff\xfe b\nc\n").unwrap();
    let source = SourceDir::new(dir.path()).unwrap();
    let diff = b"--- a/k.c\n+++ b/k.c\n@@ -1,3 +1,3 @@\n a\n-\xff\xfe b\n+x\n c\n";
    let mapping = map_onto(&patch::parse(diff).unwrap(), &source).unwrap();
    assert_eq!(
        states(&mapping),
        [HunkState::Applied {
            offset: 0,
            fuzz: 0,
            target_line: 1
        }]
    );
}

#[test]
fn a_file_past_the_size_limit_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = std::fs::File::create(dir.path().join("huge.c")).unwrap();
    file.set_len(analyzer::source::MAX_SOURCE_FILE_BYTES + 1)
        .unwrap();
    let source = SourceDir::new(dir.path()).unwrap();
    let error = source.read("huge.c").unwrap_err();
    assert!(matches!(error, SourceError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("huge.c"), "{error}");
}

#[test]
fn a_large_file_of_identical_lines_is_searched_by_hash_not_line_by_line() {
    // 100,000 identical lines and a hunk of them with one line that is nowhere: every
    // position's hash is compared, no position line by line, at every fuzz level. (A
    // search comparing each position line by line would take 100,000 x 7 x 6 steps; this
    // is built to take a few hundred thousand.)
    let mut text = "\tx = 1;\n".repeat(100_000);
    text.push_str("end\n");
    let (_dir, source) = tree(&[("big.c", &text)]);
    let diff = "--- a/big.c\n+++ b/big.c\n@@ -50000,7 +50000,7 @@\n \tx = 1;\n \tx = 1;\n \tx = 1;\n-\tnowhere;\n+\ty = 2;\n \tx = 1;\n \tx = 1;\n \tx = 1;\n";
    assert_eq!(states(&map(diff, &source)), [HunkState::NotFound]);
    // And one that is there, far from where the fix says: found at the far end.
    let diff =
        "--- a/big.c\n+++ b/big.c\n@@ -10,3 +10,3 @@\n \tx = 1;\n-\tx = 1;\n+\ty = 2;\n end\n";
    assert_eq!(
        states(&map(diff, &source)),
        [HunkState::Applied {
            offset: 99_989,
            fuzz: 0,
            target_line: 99_999
        }]
    );
}

// The real case: kpatch's shadow-newpid.patch, written against Linux 6.2.0, and the
// files of Debian's 6.1.192 kernel (linux-image-6.1.0-56-amd64).

fn data() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// The function whose definition holds `line` in kernel-style C `text`: the nearest line
/// above (or at) it that starts in the first column with a name and a `(`, provided no
/// `}` in the first column (a function's end) lies between.
fn enclosing_function(text: &str, line: u32) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut at = line as usize - 1;
    loop {
        let l = lines[at];
        if l.starts_with('}') && at + 1 != line as usize {
            return None;
        }
        let starts_a_definition = l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && l.contains('(')
            && !l.trim_end().ends_with(';');
        if starts_a_definition {
            let before = &l[..l.find('(')?];
            let name = before
                .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()?;
            return Some(name.to_owned());
        }
        at = at.checked_sub(1)?;
    }
}

#[test]
fn kpatch_shadow_newpid_maps_onto_debian_6_1_192_as_patch_places_it() {
    let fix = std::fs::read(data().join("kpatch/shadow-newpid.patch")).unwrap();
    let fix = patch::parse(&fix).expect("the kpatch patch parses");
    let source = SourceDir::new(&data().join("debian-6.1.192")).unwrap();
    let mapping = map_onto(&fix, &source).expect("mapping");
    let placed: Vec<(&str, u32, u32, HunkState)> = mapping
        .hunks
        .iter()
        .map(|h| (h.path.as_str(), h.hunk, h.fix_line, h.state))
        .collect();
    let applied = |offset, fuzz, target_line| HunkState::Applied {
        offset,
        fuzz,
        target_line,
    };
    // What GNU patch 2.7.6 says of the same files: array.c exact; exit.c "Hunk #1
    // succeeded at 811 (offset 9 lines)", "Hunk #2 succeeded at 891 with fuzz 2 (offset
    // 23 lines)"; fork.c three times offset 97 (it names new-side lines).
    assert_eq!(
        placed,
        [
            ("fs/proc/array.c", 1, 397, applied(0, 0, 397)),
            ("kernel/exit.c", 1, 802, applied(9, 0, 811)),
            ("kernel/exit.c", 2, 867, applied(23, 2, 890)),
            ("kernel/fork.c", 1, 2637, applied(97, 0, 2734)),
            ("kernel/fork.c", 2, 2645, applied(97, 0, 2742)),
            ("kernel/fork.c", 3, 2684, applied(97, 0, 2781)),
        ]
    );
    let changed: Vec<(String, Vec<u32>)> = changed_lines(&mapping.patch)
        .into_iter()
        .map(|c| (c.path, c.lines))
        .collect();
    // Each insertion's neighbours that hold code, in Debian's numbering (an insertion
    // just before a function's closing brace counts the line before it, not the brace).
    // As written for 6.2, fork.c's lines 2640, 2647 and 2686 are in copy_process/fork_idle
    // territory in Debian's file.
    assert_eq!(
        changed,
        [
            ("fs/proc/array.c".to_owned(), vec![400, 402, 403, 405]),
            ("kernel/exit.c".to_owned(), vec![814, 892, 893]),
            ("kernel/fork.c".to_owned(), vec![2737, 2744, 2782]),
        ]
    );
    for (path, lines) in &changed {
        let text = std::fs::read_to_string(data().join("debian-6.1.192").join(path)).unwrap();
        let functions: Vec<Option<String>> = lines
            .iter()
            .map(|&line| enclosing_function(&text, line))
            .collect();
        // task_context_switch_counts() is a static inline of array.c, inlined into
        // proc_pid_status(), the function a live patch replaces.
        let expected = match path.as_str() {
            "kernel/fork.c" => "kernel_clone",
            "kernel/exit.c" => "do_exit",
            _ => "task_context_switch_counts",
        };
        assert!(
            functions.iter().all(|f| f.as_deref() == Some(expected)),
            "{path}: {functions:?}"
        );
    }
    // As written (without mapping), the fork.c lines fall elsewhere in Debian's file.
    let fork = std::fs::read_to_string(data().join("debian-6.1.192/kernel/fork.c")).unwrap();
    let as_written: Vec<Option<String>> = changed_lines(&fix)
        .into_iter()
        .find(|c| c.path == "kernel/fork.c")
        .unwrap()
        .lines
        .iter()
        .map(|&line| enclosing_function(&fork, line))
        .collect();
    assert!(
        as_written
            .iter()
            .all(|f| f.as_deref() != Some("kernel_clone")),
        "{as_written:?}"
    );
    let text = mapping
        .patch
        .files
        .iter()
        .map(|f| f.path())
        .collect::<Vec<_>>();
    assert_eq!(text, ["fs/proc/array.c", "kernel/exit.c", "kernel/fork.c"]);
}
