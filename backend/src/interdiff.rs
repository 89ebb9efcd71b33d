//! The interdiff: what changed between two revisions of a fix.
//!
//! Reviewers who approved revision 2 need to see what revision 3 does differently, not
//! re-read the whole fix. Both revisions are diffs against (possibly different) trees, so
//! this compares the diffs themselves line by line, as `git range-diff` does for one
//! commit: a `-` line here is in the older diff only, a `+` line in the newer only. Mail
//! headers and the commit message count: a changed message is a change to review too.

use graftbench_app::model::{InterdiffHunk, InterdiffLine, LineKind};
use similar::{Algorithm, ChangeTag, TextDiff};

/// Lines of unchanged context around each run of differences.
const CONTEXT: usize = 3;
/// The line diff gives up looking for the smallest answer after this long and shows a
/// larger, still correct one: two crafted 5 MiB revisions must not hold a core for long.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The runs of lines in which `older` and `newer` differ, with context.
pub fn interdiff(older: &[u8], newer: &[u8]) -> Vec<InterdiffHunk> {
    let older = String::from_utf8_lossy(older);
    let newer = String::from_utf8_lossy(newer);
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .timeout(TIMEOUT)
        .diff_lines(older.as_ref(), newer.as_ref());
    diff.grouped_ops(CONTEXT)
        .into_iter()
        .filter_map(|group| {
            let first = group.first()?;
            let lines = group
                .iter()
                .flat_map(|op| diff.iter_changes(op))
                .map(|change| InterdiffLine {
                    kind: match change.tag() {
                        ChangeTag::Equal => LineKind::Context,
                        ChangeTag::Delete => LineKind::Removed,
                        ChangeTag::Insert => LineKind::Added,
                    },
                    text: change.value().trim_end_matches(['\n', '\r']).to_owned(),
                })
                .collect();
            Some(InterdiffHunk {
                old_start: first.old_range().start + 1,
                new_start: first.new_range().start + 1,
                lines,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_revisions_have_no_interdiff() {
        assert!(interdiff(b"a\nb\n", b"a\nb\n").is_empty());
    }

    #[test]
    fn a_changed_line_of_the_fix_shows_as_removed_and_added() {
        let r1 = b"--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n";
        let r2 = b"--- a/x.c\n+++ b/x.c\n@@ -1,3 +1,3 @@\n a\n-b\n+c2\n d\n";
        let hunks = interdiff(r1, r2);
        assert_eq!(hunks.len(), 1);
        let changed: Vec<(LineKind, &str)> = hunks[0]
            .lines
            .iter()
            .filter(|l| l.kind != LineKind::Context)
            .map(|l| (l.kind, l.text.as_str()))
            .collect();
        assert_eq!(
            changed,
            [(LineKind::Removed, "+c"), (LineKind::Added, "+c2")]
        );
        assert_eq!(hunks[0].old_start, 3);
    }
}
