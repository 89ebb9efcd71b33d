//! The interdiff: what changed between two revisions of a fix.
//!
//! Reviewers who approved revision 2 need to see what revision 4 does differently, not
//! re-read the whole fix, and not the differences between two mails' bytes (the `From
//! <sha>` line, the diffstat and the `index` lines change with every rebase and mean
//! nothing). So each file is compared by what each revision *leaves* in it, the way
//! `interdiff(1)` from patchutils does:
//!
//! 1. The lines each revision's hunks show of the original file (context and removed
//!    lines, by old line number) are pooled: together they are the part of the original
//!    file either revision touches.
//! 2. Each revision is applied to that pool, giving the lines of the resulting file in
//!    those places, with their line numbers in that revision's result.
//! 3. The two results are diffed: a `-` line is what the older revision leaves there, a
//!    `+` line what the newer one leaves.
//!
//! A file that only one revision changes shows that change (or its undoing). When the
//! two revisions disagree about the original file (one was rebased onto other code), the
//! pool cannot be built; such a file is compared by its hunks' lines, markers included
//! (`-` lines too: a line removed by one revision only is a change), as `git
//! range-diff` compares a commit, and named in [`Interdiff::rebased`]. A path that
//! appears twice in one revision counts with every section (`patch` applies them all).
//!
//! The commit message is compared apart, line by line ([`message_interdiff`]).

use analyzer::patch::{FileChange, FileDiff, Hunk, HunkLine, LineKind, MailHeader, Patch};
use graftbench_app::model::{self, InterdiffHunk, InterdiffLine};
use similar::{Algorithm, ChangeTag, DiffOp, TextDiff};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Lines of unchanged context around each run of differences.
const CONTEXT: usize = 3;
/// The whole interdiff (every file and the message) stops looking for the smallest
/// answer after this long and shows larger, still correct ones: two crafted 5 MiB
/// revisions must not hold a core for long. One deadline for all, not one per region:
/// a revision can have thousands of regions.
const TIMEOUT: Duration = Duration::from_secs(2);

/// What changed between two revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interdiff {
    /// Per file, a diff whose old side is what the older revision leaves in the file and
    /// whose new side is what the newer one leaves; line numbers are those of each
    /// revision's resulting file. Files both revisions change alike are left out.
    pub files: Vec<FileDiff>,
    /// Files the two revisions patch in different versions, compared by their hunks'
    /// lines.
    pub rebased: Vec<String>,
    /// The commit message's changes (subject and body).
    pub message: Vec<InterdiffHunk>,
}

/// Compares two revisions of a fix: see the module documentation.
pub fn interdiff(older: &Patch, newer: &Patch) -> Interdiff {
    let deadline = Instant::now() + TIMEOUT;
    let mut paths: Vec<&str> = Vec::new();
    let mut by_path: HashMap<&str, [Vec<&FileDiff>; 2]> = HashMap::new();
    for (side, patch) in [older, newer].into_iter().enumerate() {
        for file in &patch.files {
            let entry = by_path.entry(file.path()).or_insert_with(|| {
                paths.push(file.path());
                [Vec::new(), Vec::new()]
            });
            entry[side].push(file);
        }
    }
    let mut files = Vec::new();
    let mut rebased = Vec::new();
    for path in paths {
        let Some([old, new]) = by_path.get(path) else {
            continue;
        };
        let (hunks, was_rebased) = compare_file(old, new, deadline);
        if was_rebased {
            rebased.push(path.to_owned());
        }
        if !hunks.is_empty() {
            files.push(FileDiff {
                old_path: Some(path.to_owned()),
                new_path: Some(path.to_owned()),
                change: FileChange::Modified,
                old_mode: None,
                new_mode: None,
                hunks,
                old_blob: None,
            });
        }
    }
    Interdiff {
        files,
        rebased,
        message: message_interdiff(older.mail.as_ref(), newer.mail.as_ref(), deadline),
    }
}

/// The runs of lines in which two revisions' commit messages differ, with context.
pub fn message_interdiff(
    older: Option<&MailHeader>,
    newer: Option<&MailHeader>,
    deadline: Instant,
) -> Vec<InterdiffHunk> {
    let text = |mail: Option<&MailHeader>| match mail {
        // Each line ends in a newline, so a last line that gained one is not a change.
        Some(mail) => format!(
            "Subject: {}\n\n{}\n",
            mail.subject.as_deref().unwrap_or_default(),
            mail.message.trim_end()
        ),
        None => String::new(),
    };
    let (older, newer) = (text(older), text(newer));
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .deadline(deadline)
        .diff_lines(older.as_str(), newer.as_str());
    diff.grouped_ops(CONTEXT)
        .into_iter()
        .filter_map(|group| {
            let first = group.first()?;
            let lines = group
                .iter()
                .flat_map(|op| diff.iter_changes(op))
                .map(|change| InterdiffLine {
                    kind: match change.tag() {
                        ChangeTag::Equal => model::LineKind::Context,
                        ChangeTag::Delete => model::LineKind::Removed,
                        ChangeTag::Insert => model::LineKind::Added,
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

/// A line a comment thread is on: its file's path, the new (`true`) or old side, and
/// the line number on that side.
pub type LineAnchor = (String, bool, u32);

/// Where the given lines of one revision's diff are in another revision's diff, so that
/// a comment thread on one revision can be shown on the line it maps to in another
/// (what Gerrit calls porting a comment). Only lines both diffs show can be placed: a
/// thread lives under a line of the page, and a line the other revision's diff does not
/// show has no row there. Only the anchors asked for are kept: the answer's size is the
/// number of threads, not of lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinePort {
    lines: HashMap<LineAnchor, u32>,
}

impl LinePort {
    /// Where line `line` of `path` on the new (`true`) or old side is in the other
    /// revision's diff, on the same side; `None` when it has no such line there (the
    /// line changed, went, or is outside that revision's hunks), or was not asked for.
    pub fn place(&self, path: &str, new_side: bool, line: u32) -> Option<u32> {
        self.lines.get(&(path.to_owned(), new_side, line)).copied()
    }

    /// How many of the anchors it places.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether it places none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Maps `anchors`, lines `from`'s diff shows, onto `to`'s diff: per file (found by
/// either of its paths, so renames carry) and side, the lines the hunks show on that
/// side (the original file's on the old side, the result's on the new) are diffed as
/// text, and a line in an unchanged run maps to its partner. A line whose text either
/// revision changed does not map: the thread on it is outdated, as in Gerrit. An anchor
/// is placed only where `to` has a file by the anchor's own path (the page puts the
/// thread under that file). Only the files and sides the anchors name are compared, and
/// `deadline` bounds the diffing of crafted input (past it, coarser, still correct,
/// answers).
pub fn port_lines(from: &Patch, to: &Patch, anchors: &[LineAnchor], deadline: Instant) -> LinePort {
    let mut port = LinePort::default();
    // Each of `to`'s files by each of its names.
    let mut to_files: HashMap<&str, Vec<&FileDiff>> = HashMap::new();
    for file in &to.files {
        let mut names = vec![file.path()];
        if let Some(old) = file.old_path.as_deref().filter(|old| *old != file.path()) {
            names.push(old);
        }
        for name in names {
            to_files.entry(name).or_default().push(file);
        }
    }
    // The anchors by (path, side): each such pair is compared once.
    let mut wanted: HashMap<(&str, bool), Vec<u32>> = HashMap::new();
    for (path, new_side, line) in anchors {
        wanted
            .entry((path.as_str(), *new_side))
            .or_default()
            .push(*line);
    }
    for ((path, new_side), lines) in wanted {
        let sections: Vec<&FileDiff> = from
            .files
            .iter()
            .filter(|f| f.old_path.as_deref() == Some(path) || f.new_path.as_deref() == Some(path))
            .collect();
        // The same file in `to`: by the anchor's path, or by another name of the file in
        // `from` (a rename), but only placed where `to` names the anchor's path.
        if !to_files.contains_key(path) {
            continue;
        }
        let names: Vec<&str> = sections
            .iter()
            .flat_map(|f| [f.old_path.as_deref(), f.new_path.as_deref()])
            .flatten()
            .collect();
        let Some(other) = names.iter().find_map(|name| to_files.get(name)) else {
            continue;
        };
        let (a, b) = (
            shown_lines(&sections, new_side),
            shown_lines(other, new_side),
        );
        let a_text: Vec<&str> = a.iter().map(|(t, _)| *t).collect();
        let b_text: Vec<&str> = b.iter().map(|(t, _)| *t).collect();
        let ops = similar::capture_diff_slices_deadline(
            Algorithm::Patience,
            &a_text,
            &b_text,
            Some(deadline),
        );
        // The anchors' positions among the lines `from` shows on that side, in one pass
        // (a thread count times a line count would not be linear).
        let asked: HashSet<u32> = lines.into_iter().collect();
        let positions: Vec<(usize, u32)> = a
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| asked.contains(n))
            .map(|(at, (_, n))| (at, *n))
            .collect();
        for op in &ops {
            let DiffOp::Equal {
                old_index,
                new_index,
                len,
            } = *op
            else {
                continue;
            };
            let first = positions.partition_point(|(at, _)| *at < old_index);
            for &(at, line) in positions[first..]
                .iter()
                .take_while(|(at, _)| *at < old_index + len)
            {
                if let Some((_, partner)) = b.get(new_index + (at - old_index)) {
                    port.lines
                        .entry((path.to_owned(), new_side, line))
                        .or_insert(*partner);
                }
            }
        }
    }
    port
}

/// The lines the hunks of `sections` show on one side (the new when `new_side`), with
/// their numbers there.
fn shown_lines<'p>(sections: &[&'p FileDiff], new_side: bool) -> Vec<(&'p str, u32)> {
    let mut seen = Vec::new();
    for l in hunks_of(sections).flat_map(|h| &h.lines) {
        let line = match (new_side, l.kind) {
            (true, LineKind::Removed) | (false, LineKind::Added) => None,
            (true, _) => l.new_line,
            (false, _) => l.old_line,
        };
        if let Some(line) = line {
            seen.push((l.text.as_str(), line));
        }
    }
    seen
}

/// One line a revision leaves in its resulting file, with its number there.
#[derive(Debug, Clone, Copy)]
struct ResultLine<'p> {
    text: &'p str,
    line: Option<u32>,
}

/// One hunk as a replacement: original lines `start..end` become `lines`.
struct Edit<'p> {
    start: u32,
    end: u32,
    lines: Vec<ResultLine<'p>>,
    section: &'p str,
}

/// The hunks of every section of one path in one revision, in order.
fn hunks_of<'s, 'p>(sections: &'s [&'p FileDiff]) -> impl Iterator<Item = &'p Hunk> + 's {
    sections.iter().flat_map(|file| &file.hunks)
}

fn edits<'p>(sections: &[&'p FileDiff]) -> Vec<Edit<'p>> {
    hunks_of(sections)
        .map(|hunk| {
            // `@@ -5,0 +6,2 @@` inserts after line 5: before line 6, replacing nothing.
            let start = if hunk.old_lines == 0 {
                hunk.old_start.saturating_add(1)
            } else {
                hunk.old_start
            };
            Edit {
                start,
                end: start.saturating_add(hunk.old_lines),
                lines: hunk
                    .lines
                    .iter()
                    .filter(|l| l.kind != LineKind::Removed)
                    .map(|l| ResultLine {
                        text: &l.text,
                        line: l.new_line,
                    })
                    .collect(),
                section: &hunk.section,
            }
        })
        .collect()
}

/// Adds the original file's lines a revision's hunks show, by line number, to `into`;
/// `false` when one disagrees with a line already there.
fn original_lines<'p>(sections: &[&'p FileDiff], into: &mut HashMap<u32, &'p str>) -> bool {
    for line in hunks_of(sections).flat_map(|h| &h.lines) {
        if let (LineKind::Context | LineKind::Removed, Some(n)) = (line.kind, line.old_line) {
            match into.get(&n) {
                Some(seen) if *seen != line.text => return false,
                Some(_) => {}
                None => {
                    into.insert(n, &line.text);
                }
            }
        }
    }
    true
}

fn in_order(edits: &[Edit<'_>]) -> bool {
    edits.windows(2).all(|pair| pair[0].end <= pair[1].start)
}

/// The interdiff hunks of one path, and whether it had to be compared as rebased.
fn compare_file(older: &[&FileDiff], newer: &[&FileDiff], deadline: Instant) -> (Vec<Hunk>, bool) {
    let old_edits = edits(older);
    let new_edits = edits(newer);
    let mut original = HashMap::new();
    let consistent = original_lines(older, &mut original)
        && original_lines(newer, &mut original)
        && in_order(&old_edits)
        && in_order(&new_edits);
    if !consistent {
        return (compare_hunk_lines(older, newer, deadline), true);
    }
    let mut regions: Vec<(u32, u32)> = old_edits
        .iter()
        .chain(&new_edits)
        .map(|e| (e.start, e.end))
        .collect();
    regions.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(regions.len());
    for (start, end) in regions {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut old_cursor = Applier::new(&old_edits);
    let mut new_cursor = Applier::new(&new_edits);
    let mut hunks = Vec::new();
    for (start, end) in merged {
        let (Some(old_result), Some(new_result)) = (
            old_cursor.apply(start, end, &original),
            new_cursor.apply(start, end, &original),
        ) else {
            // Every line of a region is shown by one revision or the other (the parser
            // checks hunks' counts): this cannot happen. Compare as rebased rather than
            // say nothing.
            return (compare_hunk_lines(older, newer, deadline), true);
        };
        let section = new_cursor.section.or(old_cursor.section).unwrap_or("");
        hunks.extend(diff_results(&old_result, &new_result, section, deadline));
    }
    (hunks, false)
}

/// The revisions' hunks compared line by line with their markers (`-` lines included),
/// for revisions that disagree about the original file: every line either adds or
/// removes is seen, though not against the file around it.
fn compare_hunk_lines(older: &[&FileDiff], newer: &[&FileDiff], deadline: Instant) -> Vec<Hunk> {
    let marked = |sections: &[&FileDiff]| -> Vec<(String, Option<u32>)> {
        hunks_of(sections)
            .flat_map(|h| &h.lines)
            .map(|l| {
                let (mark, line) = match l.kind {
                    LineKind::Context => (' ', l.new_line),
                    LineKind::Removed => ('-', l.old_line),
                    LineKind::Added => ('+', l.new_line),
                };
                (format!("{mark}{}", l.text), line)
            })
            .collect()
    };
    let (old_lines, new_lines) = (marked(older), marked(newer));
    fn view(lines: &[(String, Option<u32>)]) -> Vec<ResultLine<'_>> {
        lines
            .iter()
            .map(|(text, line)| ResultLine { text, line: *line })
            .collect()
    }
    let section = hunks_of(newer)
        .chain(hunks_of(older))
        .next()
        .map_or("", |h| h.section.as_str());
    diff_results(&view(&old_lines), &view(&new_lines), section, deadline)
}

/// Applies one revision's edits region by region, in order.
struct Applier<'e, 'p> {
    edits: &'e [Edit<'p>],
    next: usize,
    /// Lines the edits applied so far added minus those they removed: the shift between
    /// an original line number and the same line's number in the result.
    shift: i64,
    /// The section of the last edit applied in the current region.
    section: Option<&'p str>,
}

impl<'e, 'p> Applier<'e, 'p> {
    fn new(edits: &'e [Edit<'p>]) -> Self {
        Applier {
            edits,
            next: 0,
            shift: 0,
            section: None,
        }
    }

    /// The lines this revision leaves in place of original lines `start..end`.
    fn apply(
        &mut self,
        start: u32,
        end: u32,
        original: &HashMap<u32, &'p str>,
    ) -> Option<Vec<ResultLine<'p>>> {
        self.section = None;
        let mut out = Vec::new();
        let mut line = start;
        loop {
            while let Some(edit) = self.edits.get(self.next).filter(|e| e.start == line) {
                out.extend(edit.lines.iter().copied());
                self.shift += edit.lines.len() as i64 - i64::from(edit.end - edit.start);
                self.section = Some(edit.section);
                line = edit.end;
                self.next += 1;
            }
            if line >= end {
                return Some(out);
            }
            let text = original.get(&line)?;
            out.push(ResultLine {
                text,
                line: u32::try_from(i64::from(line) + self.shift).ok(),
            });
            line += 1;
        }
    }
}

/// The hunks in which two revisions' results for one region differ. Past the deadline
/// the diff stops searching and answers coarsely (still correct).
fn diff_results(
    older: &[ResultLine<'_>],
    newer: &[ResultLine<'_>],
    section: &str,
    deadline: Instant,
) -> Vec<Hunk> {
    let old_text: Vec<&str> = older.iter().map(|l| l.text).collect();
    let new_text: Vec<&str> = newer.iter().map(|l| l.text).collect();
    if old_text == new_text {
        return Vec::new();
    }
    let ops = similar::capture_diff_slices_deadline(
        Algorithm::Patience,
        &old_text,
        &new_text,
        Some(deadline),
    );
    similar::group_diff_ops(ops, CONTEXT)
        .into_iter()
        .map(|group| hunk_of(&group, older, newer, section))
        .collect()
}

fn hunk_of(
    group: &[DiffOp],
    older: &[ResultLine<'_>],
    newer: &[ResultLine<'_>],
    section: &str,
) -> Hunk {
    let mut lines = Vec::new();
    for op in group {
        let (old_range, new_range) = (op.old_range(), op.new_range());
        match op.tag() {
            similar::DiffTag::Equal => {
                for (o, n) in old_range.zip(new_range) {
                    lines.push(HunkLine {
                        kind: LineKind::Context,
                        old_line: older[o].line,
                        new_line: newer[n].line,
                        text: newer[n].text.to_owned(),
                        no_newline_at_eof: false,
                    });
                }
            }
            similar::DiffTag::Delete | similar::DiffTag::Replace | similar::DiffTag::Insert => {
                for o in old_range {
                    lines.push(HunkLine {
                        kind: LineKind::Removed,
                        old_line: older[o].line,
                        new_line: None,
                        text: older[o].text.to_owned(),
                        no_newline_at_eof: false,
                    });
                }
                for n in new_range {
                    lines.push(HunkLine {
                        kind: LineKind::Added,
                        old_line: None,
                        new_line: newer[n].line,
                        text: newer[n].text.to_owned(),
                        no_newline_at_eof: false,
                    });
                }
            }
        }
    }
    let first = |side: fn(&HunkLine) -> Option<u32>| lines.iter().find_map(side).unwrap_or(0);
    let count = |kind: LineKind| lines.iter().filter(|l| l.kind != kind).count() as u32;
    Hunk {
        old_start: first(|l| l.old_line),
        old_lines: count(LineKind::Added),
        new_start: first(|l| l.new_line),
        new_lines: count(LineKind::Removed),
        section: section.to_owned(),
        input_line: 0,
        lines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Patch {
        analyzer::patch::parse(text.as_bytes()).expect("a valid test patch")
    }

    /// A changed line: (path, `-` or `+`, old line, new line, text).
    type Change = (String, char, Option<u32>, Option<u32>, String);

    /// The changed lines of each file.
    fn changes(diff: &Interdiff) -> Vec<Change> {
        diff.files
            .iter()
            .flat_map(|f| {
                f.hunks.iter().flat_map(|h| &h.lines).filter_map(|l| {
                    let mark = match l.kind {
                        LineKind::Context => return None,
                        LineKind::Removed => '-',
                        LineKind::Added => '+',
                    };
                    Some((
                        f.path().to_owned(),
                        mark,
                        l.old_line,
                        l.new_line,
                        l.text.clone(),
                    ))
                })
            })
            .collect()
    }

    fn mail(sha: &str, subject: &str, body: &str, index: &str, diff: &str) -> String {
        format!(
            "From {sha} Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\n\
             Date: Mon, 1 Jan 2024 00:00:00 +0000\nSubject: [PATCH] {subject}\n\n{body}\n---\n \
             x.c | 2 +-\n 1 file changed\n\ndiff --git a/x.c b/x.c\nindex {index} 100644\n\
             --- a/x.c\n+++ b/x.c\n{diff}-- \n2.39.0\n"
        )
    }

    const R1: &str = "@@ -1,4 +1,4 @@\n a\n-b\n+c\n d\n e\n";

    #[test]
    fn identical_revisions_have_no_interdiff() {
        let r1 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        let diff = interdiff(&r1, &r1.clone());
        assert!(diff.files.is_empty() && diff.message.is_empty() && diff.rebased.is_empty());
    }

    #[test]
    fn mail_headers_diffstat_and_index_lines_are_not_changes() {
        let r1 = parse(&mail(&"1".repeat(40), "x: fix", "Body.", "aaaa..bbbb", R1));
        let r2 = parse(&mail(&"2".repeat(40), "x: fix", "Body.", "cccc..dddd", R1));
        let diff = interdiff(&r1, &r2);
        assert!(r1.mail.is_some() && r1.mail != r2.mail);
        assert_eq!(
            diff,
            Interdiff {
                files: vec![],
                rebased: vec![],
                message: vec![]
            }
        );
    }

    #[test]
    fn a_changed_line_shows_what_each_revision_leaves_with_its_line_numbers() {
        let r1 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        let r2 = parse("--- a/x.c\n+++ b/x.c\n@@ -1,4 +1,5 @@\n a\n-b\n+c2\n+c3\n d\n e\n");
        assert_eq!(
            changes(&interdiff(&r1, &r2)),
            [
                ("x.c".into(), '-', Some(2), None, "c".into()),
                ("x.c".into(), '+', None, Some(2), "c2".into()),
                ("x.c".into(), '+', None, Some(3), "c3".into()),
            ]
        );
    }

    #[test]
    fn a_hunk_only_the_newer_revision_has_shows_against_the_original_lines() {
        let r1 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        // Revision 2 keeps the first hunk and adds a line after original line 20, where
        // revision 1 leaves the file as it was: that line is the only change.
        let r2 = parse(&format!(
            "--- a/x.c\n+++ b/x.c\n{R1}@@ -19,2 +19,3 @@\n s\n t\n+u\n"
        ));
        let diff = interdiff(&r1, &r2);
        assert_eq!(
            changes(&diff),
            [("x.c".into(), '+', None, Some(21), "u".into())]
        );
        // The context around it is the original file's, numbered in r1's result.
        let context: Vec<(Option<u32>, Option<u32>, &str)> = diff.files[0].hunks[0]
            .lines
            .iter()
            .filter(|l| l.kind == LineKind::Context)
            .map(|l| (l.old_line, l.new_line, l.text.as_str()))
            .collect();
        assert_eq!(
            context,
            [(Some(19), Some(19), "s"), (Some(20), Some(20), "t")]
        );
    }

    #[test]
    fn line_numbers_follow_each_revisions_earlier_hunks() {
        // r1 adds two lines at the top; r2 adds none there. Both change original line 30
        // differently: in r1's result it is line 32, in r2's line 30.
        let r1 = parse(
            "--- a/x.c\n+++ b/x.c\n@@ -1,1 +1,3 @@\n a\n+a1\n+a2\n@@ -30,1 +32,1 @@\n-z\n+z1\n",
        );
        let r2 = parse("--- a/x.c\n+++ b/x.c\n@@ -30,1 +30,1 @@\n-z\n+z2\n");
        assert_eq!(
            changes(&interdiff(&r1, &r2)),
            [
                ("x.c".into(), '-', Some(2), None, "a1".into()),
                ("x.c".into(), '-', Some(3), None, "a2".into()),
                ("x.c".into(), '-', Some(32), None, "z1".into()),
                ("x.c".into(), '+', None, Some(30), "z2".into()),
            ]
        );
    }

    #[test]
    fn a_file_the_newer_revision_drops_shows_its_change_undone() {
        let r1 = parse(&format!(
            "--- a/x.c\n+++ b/x.c\n{R1}--- a/y.h\n+++ b/y.h\n@@ -1,1 +1,1 @@\n-old\n+new\n"
        ));
        let r2 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        assert_eq!(
            changes(&interdiff(&r1, &r2)),
            [
                ("y.h".into(), '-', Some(1), None, "new".into()),
                ("y.h".into(), '+', None, Some(1), "old".into()),
            ]
        );
    }

    #[test]
    fn new_files_compare_by_their_content() {
        let added = |body: &str| {
            parse(&format!(
                "diff --git a/n.c b/n.c\nnew file mode 100644\n--- /dev/null\n+++ b/n.c\n\
                 @@ -0,0 +1,2 @@\n+one\n{body}"
            ))
        };
        let diff = interdiff(&added("+two\n"), &added("+2\n"));
        assert_eq!(
            changes(&diff),
            [
                ("n.c".into(), '-', Some(2), None, "two".into()),
                ("n.c".into(), '+', None, Some(2), "2".into()),
            ]
        );
        assert!(diff.rebased.is_empty());
    }

    #[test]
    fn revisions_against_different_originals_compare_by_their_hunk_lines() {
        let r1 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        let r2 = parse("--- a/x.c\n+++ b/x.c\n@@ -1,4 +1,4 @@\n A\n-b\n+c\n d\n e\n");
        let diff = interdiff(&r1, &r2);
        assert_eq!(diff.rebased, ["x.c"]);
        assert_eq!(
            changes(&diff),
            [
                ("x.c".into(), '-', Some(1), None, " a".into()),
                ("x.c".into(), '+', None, Some(1), " A".into()),
            ]
        );
    }

    /// Security review: a revision that removes one more line, and disagrees about the
    /// original file so that the pool cannot be built, must still show that removal.
    #[test]
    fn a_line_only_one_rebased_revision_removes_is_a_change() {
        let r1 = parse("--- a/x.c\n+++ b/x.c\n@@ -10,3 +10,3 @@\n a\n-b\n+c\n d\n");
        let r2 = parse(
            "--- a/x.c\n+++ b/x.c\n@@ -10,4 +10,3 @@\n a\n-b\n-if (len > max) return -EINVAL;\n+c\n d\n",
        );
        let diff = interdiff(&r1, &r2);
        assert_eq!(diff.rebased, ["x.c"]);
        assert_eq!(
            changes(&diff),
            [(
                "x.c".into(),
                '+',
                None,
                Some(12),
                "-if (len > max) return -EINVAL;".into()
            )]
        );
    }

    /// Security review: `patch` applies every section of a path that appears twice, so
    /// the interdiff must show the second section's hunks too.
    #[test]
    fn a_second_section_of_the_same_path_is_compared_too() {
        let r1 = parse(&format!("--- a/x.c\n+++ b/x.c\n{R1}"));
        let r2 = parse(&format!(
            "--- a/x.c\n+++ b/x.c\n{R1}--- a/x.c\n+++ b/x.c\n@@ -40,1 +40,2 @@\n z\n+evil();\n"
        ));
        assert_eq!(
            changes(&interdiff(&r1, &r2)),
            [("x.c".into(), '+', None, Some(41), "evil();".into())]
        );
    }

    #[test]
    fn the_commit_message_is_compared_apart() {
        let sha = "1".repeat(40);
        let r1 = parse(&mail(&sha, "x: fix", "Body.", "aaaa..bbbb", R1));
        let r2 = parse(&mail(
            &sha,
            "x: fix it",
            "Body.\n\nCc: stable",
            "aaaa..bbbb",
            R1,
        ));
        let diff = interdiff(&r1, &r2);
        assert!(diff.files.is_empty());
        let changed: Vec<(model::LineKind, &str)> = diff
            .message
            .iter()
            .flat_map(|h| &h.lines)
            .filter(|l| l.kind != model::LineKind::Context)
            .map(|l| (l.kind, l.text.as_str()))
            .collect();
        assert_eq!(
            changed,
            [
                (model::LineKind::Removed, "Subject: x: fix"),
                (model::LineKind::Added, "Subject: x: fix it"),
                (model::LineKind::Added, ""),
                (model::LineKind::Added, "Cc: stable"),
            ]
        );
    }

    /// Every line 1..=9 of `paths` on both sides, ported from `from` onto `to`.
    fn port(from: &Patch, to: &Patch, paths: &[&str]) -> LinePort {
        let anchors: Vec<LineAnchor> = paths
            .iter()
            .flat_map(|p| {
                [false, true]
                    .into_iter()
                    .flat_map(move |side| (1..10).map(move |line| ((*p).to_owned(), side, line)))
            })
            .collect();
        port_lines(from, to, &anchors, Instant::now() + TIMEOUT)
    }

    #[test]
    fn a_line_a_newer_revision_moves_maps_to_its_new_number_and_a_changed_one_does_not() {
        // r1: `c` replaces `b` at line 2, `d` follows. r2 adds a line above, keeps `c`,
        // and rewrites `d` to `d2`.
        let r1 = parse("--- a/x.c\n+++ b/x.c\n@@ -1,4 +1,4 @@\n a\n-b\n+c\n d\n e\n");
        let r2 = parse("--- a/x.c\n+++ b/x.c\n@@ -1,4 +1,5 @@\n a\n+a2\n-b\n+c\n-d\n+d2\n e\n");
        let ported = port(&r1, &r2, &["x.c"]);
        assert_eq!(
            ported.place("x.c", true, 2),
            Some(3),
            "`c` moved down one line"
        );
        assert_eq!(ported.place("x.c", true, 3), None, "`d` was rewritten");
        assert_eq!(
            ported.place("x.c", true, 4),
            Some(5),
            "`e` is context in both"
        );
        // The old side is the original file: `b` is removed by both, at line 2.
        assert_eq!(ported.place("x.c", false, 2), Some(2));
        assert_eq!(
            ported.place("x.c", false, 3),
            Some(3),
            "`d`: context, then removed"
        );
        // And back: r2's lines onto r1's.
        let back = port(&r2, &r1, &["x.c"]);
        assert_eq!(back.place("x.c", true, 3), Some(2));
        assert_eq!(back.place("x.c", true, 2), None, "`a2` is not in r1");
        // Only what was asked is kept.
        let one = port_lines(
            &r1,
            &r2,
            &[("x.c".to_owned(), true, 2)],
            Instant::now() + TIMEOUT,
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn a_renamed_file_ports_by_either_path_where_the_other_revision_names_that_path() {
        let r1 = parse(
            "--- a/x.c\n+++ b/x.c\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n--- a/y.c\n+++ b/y.c\n@@ -1 +1 @@\n-y\n+z\n",
        );
        let r2 = parse(
            "diff --git a/x.c b/w.c\nsimilarity index 90%\nrename from x.c\nrename to w.c\n\
             --- a/x.c\n+++ b/w.c\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n",
        );
        let forward = port(&r1, &r2, &["x.c", "y.c"]);
        assert_eq!(
            forward.place("x.c", true, 2),
            Some(2),
            "r2 names x.c as the old path"
        );
        assert_eq!(
            forward.place("y.c", true, 1),
            None,
            "r2 no longer changes y.c"
        );
        let back = port(&r2, &r1, &["w.c", "x.c"]);
        assert_eq!(back.place("x.c", true, 2), Some(2));
        // r1 has no file named w.c: a thread on w.c would have no file to sit under.
        assert_eq!(back.place("w.c", true, 2), None);
        assert!(!forward.is_empty());
    }
}
