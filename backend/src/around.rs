//! The lines around a hunk: the unchanged lines of a file between one hunk of a diff and
//! the next, which the patch page reveals twenty at a time.
//!
//! They come from a target's own copy of the file when one of the patch's targets has a
//! source tree ([`crate::service::sources::context`]); otherwise from the patch's other
//! revisions ([`KnownLines`]), whose hunks often show lines this revision's do not: the
//! context of a hunk that moved, or a hunk a later revision dropped. Those lines are
//! pooled only from revisions that patch the same version of the file: their `index`
//! lines name the same original blob (where both have one), and every line two of them
//! show agrees.

use analyzer::patch::{FileChange, FileDiff, Hunk, LineKind, Patch};
use graftbench_app::model::KnownGap;
use std::collections::HashMap;

/// A line of the original file shown around a hunk: its numbers as the diff counts them
/// (old and new side), and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextLine {
    /// Old-side line number, in the diff's numbering.
    pub old: u32,
    /// New-side line number, in the diff's numbering.
    pub new: u32,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub text: String,
}

/// The first old-side line at or after a hunk (a hunk with no old lines names the line
/// it follows).
fn old_start(h: &Hunk) -> u32 {
    h.old_start.saturating_add(u32::from(h.old_lines == 0))
}

/// The first new-side line at or after a hunk.
fn new_start(h: &Hunk) -> u32 {
    h.new_start.saturating_add(u32::from(h.new_lines == 0))
}

/// The first old-side line after a hunk.
fn old_end(h: &Hunk) -> u32 {
    old_start(h).saturating_add(h.old_lines)
}

/// The unchanged lines on one side of a hunk, up to its neighbour: old-side numbers from
/// `nearest` (next to the hunk) to `farthest`, and what to add to one to get its new-side
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    nearest: u32,
    farthest: u32,
    below: bool,
    shift: i64,
}

impl Gap {
    /// Above hunk `hunk` of `hunks` (down to the hunk before, or line 1), or `below` it
    /// (up to the next hunk; the last hunk's gap runs on to the file's end, which only
    /// the file knows). `None` when the hunks touch there.
    fn of(hunks: &[Hunk], hunk: usize, below: bool) -> Option<Gap> {
        let this = hunks.get(hunk)?;
        let gap = if below {
            let farthest = hunks
                .get(hunk + 1)
                .map_or(u32::MAX, |next| old_start(next).saturating_sub(1));
            Gap {
                nearest: old_end(this),
                farthest,
                below,
                shift: i64::from(new_start(this)) + i64::from(this.new_lines)
                    - i64::from(old_end(this)),
            }
        } else {
            let farthest = match hunk.checked_sub(1).and_then(|i| hunks.get(i)) {
                Some(before) => old_end(before),
                None => 1,
            };
            Gap {
                nearest: old_start(this).checked_sub(1)?,
                farthest,
                below,
                shift: i64::from(new_start(this)) - i64::from(old_start(this)),
            }
        };
        let empty = if below {
            gap.nearest > gap.farthest
        } else {
            gap.nearest < gap.farthest || gap.nearest == 0
        };
        (!empty).then_some(gap)
    }

    /// The gap's old-side numbers, nearest the hunk first.
    fn lines(self) -> Box<dyn Iterator<Item = u32>> {
        if self.below {
            Box::new(self.nearest..=self.farthest)
        } else {
            Box::new((self.farthest..=self.nearest).rev())
        }
    }
}

/// Up to `count` lines next to hunk `hunk` of `hunks` (a file's hunks in the diff): above
/// it, never into the hunk before, or `below` it, never into the next; nearest the hunk
/// first in the walk, returned top to bottom, numbered as the diff counts. `line_at`
/// gives the original file's line by the diff's old-side number, `None` where it is not
/// known (or past the file's end): the lines stop there, so what is shown always joins
/// the hunk.
pub fn around(
    hunks: &[Hunk],
    hunk: usize,
    below: bool,
    count: usize,
    mut line_at: impl FnMut(u32) -> Option<String>,
) -> Vec<ContextLine> {
    let Some(gap) = Gap::of(hunks, hunk, below) else {
        return Vec::new();
    };
    let mut shown = Vec::new();
    for old in gap.lines().take(count) {
        let (Some(text), Ok(new)) = (line_at(old), u32::try_from(i64::from(old) + gap.shift))
        else {
            break;
        };
        shown.push(ContextLine { old, new, text });
    }
    if !below {
        shown.reverse();
    }
    shown
}

/// The original lines of a revision's files that its own hunks do not show and the
/// patch's other revisions' hunks do, for the gaps between its hunks.
#[derive(Debug, Default)]
pub struct KnownLines {
    /// The files with lines known around their hunks.
    files: Vec<KnownFile>,
    /// Every file of the revision, by path, with its number of hunks.
    hunks: HashMap<String, usize>,
    gaps: Vec<KnownGap>,
}

/// One file of the revision with known lines: its path, its hunks' headers, and the
/// lines known around them by old-side number.
#[derive(Debug)]
struct KnownFile {
    path: String,
    hunks: Vec<Hunk>,
    lines: HashMap<u32, String>,
}

/// What the other revisions know of one original path the revision changes.
#[derive(Default)]
struct PathPool<'s> {
    /// The first section of the revision with this original: whose blob id counts.
    section: Option<&'s FileDiff>,
    /// The revision's own lines of the original.
    own: HashMap<u32, &'s str>,
    /// Old-side lines a request can reach (first, last), sorted and merged.
    reach: Vec<(u32, u32)>,
    /// Lines other revisions show there.
    pool: HashMap<u32, String>,
}

impl PathPool<'_> {
    fn reaches(&self, n: u32) -> bool {
        let i = self.reach.partition_point(|&(_, last)| last < n);
        self.reach.get(i).is_some_and(|&(first, _)| first <= n)
    }
}

impl KnownLines {
    /// What `others` (the patch's other revisions, the ones to trust first first, parsed
    /// one at a time as the iteration asks) know about the original files of `shown`:
    /// see the module documentation. Bounded whatever the revisions: at most
    /// [`MAX_EXAMINED_LINES`] of theirs are looked at, only lines a request can reach are
    /// pooled, and at most [`MAX_KNOWN_BYTES`] are kept.
    pub fn pool(shown: &Patch, others: impl IntoIterator<Item = Patch>) -> KnownLines {
        let mut paths: HashMap<&str, PathPool> = HashMap::new();
        for file in &shown.files {
            let Some(path) = original_path(file) else {
                continue;
            };
            let entry = paths.entry(path).or_default();
            entry.section.get_or_insert(file);
            for (n, text) in original_lines(file) {
                entry.own.entry(n).or_insert(text);
            }
            entry.reach.extend(reach_of(&file.hunks));
        }
        for entry in paths.values_mut() {
            entry.reach.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(entry.reach.len());
            for &(first, last) in &entry.reach {
                match merged.last_mut() {
                    Some(open) if first <= open.1.saturating_add(1) => open.1 = open.1.max(last),
                    _ => merged.push((first, last)),
                }
            }
            entry.reach = merged;
        }
        let mut examined = 0usize;
        'revisions: for other in others {
            for section in &other.files {
                let Some(entry) = original_path(section).and_then(|p| paths.get_mut(p)) else {
                    continue;
                };
                if !entry
                    .section
                    .is_some_and(|own| own.same_original_as(section))
                {
                    continue;
                }
                let mut agrees = true;
                for (n, text) in original_lines(section) {
                    examined += 1;
                    if examined > MAX_EXAMINED_LINES {
                        break 'revisions;
                    }
                    let seen = entry
                        .own
                        .get(&n)
                        .copied()
                        .or_else(|| entry.pool.get(&n).map(String::as_str));
                    if seen.is_some_and(|seen| seen != text) {
                        agrees = false;
                        break;
                    }
                }
                if !agrees {
                    continue;
                }
                for (n, text) in original_lines(section) {
                    if !entry.own.contains_key(&n) && entry.reaches(n) {
                        entry.pool.entry(n).or_insert_with(|| text.to_owned());
                    }
                }
            }
        }
        let mut known = KnownLines::default();
        let mut budget = MAX_KNOWN_BYTES;
        for (index, file) in shown.files.iter().enumerate() {
            known
                .hunks
                .entry(file.path().to_owned())
                .or_insert(file.hunks.len());
            let Some(entry) = original_path(file).and_then(|p| paths.get(p)) else {
                continue;
            };
            if entry.pool.is_empty() {
                continue;
            }
            // The hunks' numbers only: their lines are not needed again.
            let headers: Vec<Hunk> = file
                .hunks
                .iter()
                .map(|h| Hunk {
                    old_start: h.old_start,
                    old_lines: h.old_lines,
                    new_start: h.new_start,
                    new_lines: h.new_lines,
                    section: String::new(),
                    input_line: h.input_line,
                    lines: Vec::new(),
                })
                .collect();
            // The lines kept: those joining a hunk, at most a request's worth per gap,
            // nearest the hunk first, while the budget lasts.
            let mut kept: HashMap<u32, String> = HashMap::new();
            for hunk in 0..headers.len() {
                for below in [false, true] {
                    if below && hunk + 1 != headers.len() {
                        continue; // the gap below a hunk is the next one's gap above
                    }
                    let joined = around(&headers, hunk, below, MAX_CONTEXT_LINES, |n| {
                        let text = entry.pool.get(&n)?;
                        budget = budget.checked_sub(text.len() + LINE_COST)?;
                        kept.insert(n, text.clone());
                        Some(String::new())
                    })
                    .len();
                    if joined > 0 {
                        known.gaps.push(KnownGap {
                            file: index,
                            hunk,
                            below,
                            lines: joined,
                        });
                    }
                }
            }
            if !kept.is_empty() {
                known.files.push(KnownFile {
                    path: file.path().to_owned(),
                    hunks: headers,
                    lines: kept,
                });
            }
        }
        known
    }

    /// Where lines are known: per gap, how many join the hunk.
    pub fn gaps(&self) -> &[KnownGap] {
        &self.gaps
    }

    /// Up to `count` known lines next to hunk `hunk` of the file at `path` (as
    /// [`around`]): none where nothing is known; `None` when the revision has no such
    /// file or hunk.
    pub fn around(
        &self,
        path: &str,
        hunk: usize,
        below: bool,
        count: usize,
    ) -> Option<Vec<ContextLine>> {
        if hunk >= *self.hunks.get(path)? {
            return None;
        }
        let Some(file) = self.files.iter().find(|f| f.path == path) else {
            return Some(Vec::new());
        };
        Some(around(&file.hunks, hunk, below, count, |n| {
            file.lines.get(&n).cloned()
        }))
    }
}

/// The original path of a diff of one file that has an original to show lines of.
fn original_path(file: &FileDiff) -> Option<&str> {
    match file.change {
        FileChange::Modified | FileChange::Renamed { .. } | FileChange::Copied { .. } => {
            file.old_path.as_deref()
        }
        // A new file has no original; a deleted one shows all of it.
        FileChange::Added | FileChange::Deleted => None,
    }
}

/// The old-side lines (first, last) a request can reach around `hunks`: per gap, the
/// [`MAX_CONTEXT_LINES`] nearest the hunk.
fn reach_of(hunks: &[Hunk]) -> Vec<(u32, u32)> {
    let step = u32::try_from(MAX_CONTEXT_LINES - 1).unwrap_or(u32::MAX);
    let mut reach = Vec::new();
    for hunk in 0..hunks.len() {
        if let Some(gap) = Gap::of(hunks, hunk, false) {
            reach.push((
                gap.farthest.max(gap.nearest.saturating_sub(step)),
                gap.nearest,
            ));
        }
        if hunk + 1 == hunks.len() {
            if let Some(gap) = Gap::of(hunks, hunk, true) {
                reach.push((
                    gap.nearest,
                    gap.farthest.min(gap.nearest.saturating_add(step)),
                ));
            }
        }
    }
    reach
}

/// The original file's lines a diff of one file shows (context and removed), by number.
fn original_lines(file: &FileDiff) -> impl Iterator<Item = (u32, &str)> {
    file.hunks
        .iter()
        .flat_map(|h| &h.lines)
        .filter_map(|line| match (line.kind, line.old_line) {
            (LineKind::Context | LineKind::Removed, Some(n)) => Some((n, line.text.as_str())),
            _ => None,
        })
}

/// The most lines one request reveals, and so the most kept per gap.
pub const MAX_CONTEXT_LINES: usize = 500;

/// The most lines of the other revisions one pool looks at (all eight of them): a few
/// hundred milliseconds of work at most, however large they are.
pub const MAX_EXAMINED_LINES: usize = 4_000_000;

/// The most text (and a little per line) one revision's pool keeps: far more context
/// than any real fix's revisions show, while the pools kept in memory stay small
/// whatever revisions are submitted (each may be 5 MiB).
pub const MAX_KNOWN_BYTES: usize = 2 << 20;

/// What each kept line costs of the budget besides its text.
const LINE_COST: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Patch {
        analyzer::patch::parse(text.as_bytes()).expect("test diff parses")
    }

    /// A diff of `x.c` (original blob `blob`) with one hunk per (old start, lines) in
    /// `hunks`: every line `lN` is line N of the original, and the hunk's middle line is
    /// replaced.
    fn diff(blob: &str, hunks: &[(u32, u32)]) -> String {
        let mut text =
            format!("diff --git a/x.c b/x.c\nindex {blob}..1234567 100644\n--- a/x.c\n+++ b/x.c\n");
        // Each hunk adds a line: the next starts one further on the new side.
        for (growth, &(start, lines)) in (0u32..).zip(hunks) {
            let new_start = start + growth;
            text += &format!("@@ -{start},{lines} +{new_start},{} @@\n", lines + 1);
            let middle = start + lines / 2;
            for n in start..start + lines {
                if n == middle {
                    text += &format!("-l{n}\n+L{n}\n+added\n");
                } else {
                    text += &format!(" l{n}\n");
                }
            }
        }
        text
    }

    fn texts(lines: &[ContextLine]) -> Vec<(u32, u32, &str)> {
        lines
            .iter()
            .map(|l| (l.old, l.new, l.text.as_str()))
            .collect()
    }

    #[test]
    fn the_lines_stop_at_the_neighbouring_hunk_and_at_the_first_unknown_line() {
        let patch = parse(&diff("aaaaaaa", &[(10, 3), (20, 3)]));
        let hunks = &patch.files[0].hunks;
        let known = |n: u32| (n != 5).then(|| format!("l{n}"));
        // Above the first hunk: 9, 8, 7, 6, then 5 is unknown.
        assert_eq!(
            texts(&around(hunks, 0, false, 100, known)),
            [(6, 6, "l6"), (7, 7, "l7"), (8, 8, "l8"), (9, 9, "l9")]
        );
        // Above the second hunk: from 19 down to 13, the line after the first hunk; its new
        // side is one lower after the first hunk's extra line.
        let gap = around(hunks, 1, false, 100, known);
        assert_eq!(
            (gap.first().map(|l| (l.old, l.new)), gap.len()),
            (Some((13, 14)), 7)
        );
        // Two at a time, nearest the hunk.
        assert_eq!(
            texts(&around(hunks, 1, false, 2, known)),
            [(18, 19, "l18"), (19, 20, "l19")]
        );
        // Below the last hunk: on until the file ends.
        let below = around(hunks, 1, true, 3, |n| (n <= 24).then(|| format!("l{n}")));
        assert_eq!(texts(&below), [(23, 25, "l23"), (24, 26, "l24")]);
        // Hunks that touch leave no gap; a hunk at line 1 has nothing above.
        let touching = parse(&diff("aaaaaaa", &[(1, 3), (4, 3)]));
        let hunks = &touching.files[0].hunks;
        assert!(around(hunks, 0, false, 10, known).is_empty());
        assert!(around(hunks, 1, false, 10, known).is_empty());
    }

    #[test]
    fn other_revisions_fill_the_gaps_where_they_patch_the_same_original() {
        let shown = parse(&diff("abcdef0", &[(10, 3), (30, 3)]));
        // Revision 1 showed lines 4-9 and 16-21 (its second hunk moved since).
        let earlier = parse(&diff("abcdef0", &[(4, 6), (16, 6)]));
        let known = KnownLines::pool(&shown, [earlier]);
        let gaps: Vec<(usize, bool, usize)> = known
            .gaps()
            .iter()
            .map(|g| (g.hunk, g.below, g.lines))
            .collect();
        // Above hunk 1: lines 4-9, which join it. Between the hunks: nothing joins hunk 2
        // (29 is unknown). Below hunk 2: nothing.
        assert_eq!(gaps, [(0, false, 6)]);
        let lines = known
            .around("x.c", 0, false, 20)
            .expect("x.c is in the revision");
        assert_eq!(
            lines.first().map(|l| (l.old, l.text.as_str())),
            Some((4, "l4"))
        );
        assert_eq!(lines.len(), 6);
        // Lines shown as removed in the other revision are original lines too.
        let line_7 = lines.iter().find(|l| l.old == 7).map(|l| l.text.as_str());
        assert_eq!(line_7, Some("l7"));
        assert_eq!(known.around("y.c", 0, false, 20), None);
        assert_eq!(known.around("x.c", 5, false, 20), None);
    }

    #[test]
    fn the_pool_keeps_what_requests_can_reach_within_its_budget() {
        // Another revision showing lines 1-200,000.
        let mut wide = String::from("diff --git a/x.c b/x.c\nindex abcdef0..1234567 100644\n");
        wide += "--- a/x.c\n+++ b/x.c\n@@ -1,200000 +1,200000 @@\n";
        for n in 1..=200_000 {
            wide += &format!(" l{n}\n");
        }
        let wide = parse(&wide);
        // Around one hunk: the 500 lines nearest it above, and 500 below.
        let one = KnownLines::pool(&parse(&diff("abcdef0", &[(100_000, 3)])), [wide.clone()]);
        let gaps: Vec<(usize, bool, usize)> = one
            .gaps()
            .iter()
            .map(|g| (g.hunk, g.below, g.lines))
            .collect();
        assert_eq!(gaps, [(0, false, 500), (0, true, 500)]);
        let nearest = one.around("x.c", 0, false, 1).expect("x.c");
        assert_eq!(nearest[0].text, "l99999");
        // Around 199 hunks a thousand lines apart: gaps in file order until the budget
        // (2 MiB at some 38 bytes a line: about 55,000 lines) is spent.
        let hunks: Vec<(u32, u32)> = (1..200).map(|k| (k * 1000, 3)).collect();
        let many = KnownLines::pool(&parse(&diff("abcdef0", &hunks)), [wide]);
        let cost: usize = many.files[0]
            .lines
            .values()
            .map(|text| text.len() + LINE_COST)
            .sum();
        assert!(
            cost <= MAX_KNOWN_BYTES && cost > MAX_KNOWN_BYTES - 64,
            "{cost}"
        );
        let served: usize = many.gaps().iter().map(|g| g.lines).sum();
        assert_eq!(served, many.files[0].lines.len());
        assert_eq!(
            many.gaps().first().map(|g| (g.hunk, g.lines)),
            Some((0, 500))
        );
        assert!(many.gaps().len() < 199);
    }

    #[test]
    fn sections_of_one_original_share_its_pool_and_bad_numbers_do_not_panic() {
        // The revision copies x.c to y.c and changes both; the other revision shows
        // lines 4-9 of x.c.
        let both = format!(
            "{}diff --git a/x.c b/y.c\nsimilarity index 90%\ncopy from x.c\ncopy to y.c\n\
             --- a/x.c\n+++ b/y.c\n@@ -10,3 +10,4 @@\n l10\n-l11\n+L11\n+added\n l12\n",
            diff("abcdef0", &[(10, 3)])
        );
        let known = KnownLines::pool(&parse(&both), [parse(&diff("abcdef0", &[(4, 6)]))]);
        let files: Vec<(usize, usize)> = known.gaps().iter().map(|g| (g.file, g.lines)).collect();
        assert_eq!(files, [(0, 6), (1, 6)]);
        assert_eq!(known.around("y.c", 0, false, 3).map(|l| l.len()), Some(3));
        assert_eq!(known.around("y.c", usize::MAX, false, 3), None);
        // A hunk at the last line numbers there are.
        let edge = parse("--- a/x.c\n+++ b/x.c\n@@ -4294967295,0 +4294967294,1 @@\n+x\n");
        let hunks = &edge.files[0].hunks;
        for below in [false, true] {
            let _ = around(hunks, 0, below, 5, |n| Some(n.to_string()));
        }
        let _ = KnownLines::pool(&edge, [parse(&diff("abcdef0", &[(4, 6)]))]);
    }

    #[test]
    fn a_revision_of_another_original_adds_nothing() {
        let shown = parse(&diff("abcdef0", &[(10, 3)]));
        // Another blob: a rebase onto a version where line 9 may differ.
        let rebased = parse(&diff("1111111", &[(4, 6)]));
        assert!(KnownLines::pool(&shown, [rebased]).gaps().is_empty());
        // No blob ids, but a line both show disagrees.
        let strip = |text: String| text.replace("index abcdef0..1234567 100644\n", "");
        let differs = strip(diff("abcdef0", &[(8, 4)])).replace("-l10\n", "-changed\n");
        let agrees = strip(diff("abcdef0", &[(4, 6)]));
        let shown = parse(&strip(diff("abcdef0", &[(10, 3)])));
        assert!(KnownLines::pool(&shown, [parse(&differs)])
            .gaps()
            .is_empty());
        let known = KnownLines::pool(&shown, [parse(&differs), parse(&agrees)]);
        assert_eq!(known.gaps().first().map(|g| g.lines), Some(6));
    }
}
