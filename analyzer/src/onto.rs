//! Where a fix's hunks fall in the target's own source, found the way GNU `patch` finds
//! them.
//!
//! A fix is usually written against another tree (mainline, another stable release)
//! than the kernel being live-patched, so its line numbers are not the target's: a hunk
//! written for line 2637 of mainline's `kernel/fork.c` changes line 2734 of Debian
//! 6.1.192's. [`map_onto`] reads each changed file from the target's [`SourceTree`] and
//! places each hunk where its old side (context and removed lines) is:
//!
//! - at the stated line, moved by the offset of the file's hunks placed before it, or
//!   else at the nearest line above or below (the nearer first, below before above on a
//!   tie, as `patch` does);
//! - exactly (fuzz 0), or else ignoring one, then two lines of leading and trailing
//!   context (fuzz 1 and 2), as `patch -F2` does; the ignored lines are dropped from the
//!   mapped hunk, so they are never taken as evidence;
//! - a hunk whose new side is there instead is already applied;
//! - a hunk at the start or end of its file (less context on one side than the other)
//!   only matches at the start or end of the target's file, until fuzz covers the
//!   difference, as with `patch`.
//!
//! The search is linear in the file per hunk and fuzz level: each line is hashed once,
//! each candidate position is compared by a rolling hash in constant time, and only a
//! position whose hash matches is compared line by line (and the first that matches
//! ends the search).
//!
//! The result carries the fix rewritten to the target's numbering ([`Mapping::patch`]),
//! holding only the hunks that apply: [`crate::impact`] then reads the target's lines.

use crate::patch::{FileDiff, Hunk, HunkLine, LineKind, Patch};
use crate::source::{split_lines, SourceError, SourceTree};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashMap;

/// The most context lines a match may ignore at each end of a hunk (`patch`'s default).
pub const MAX_FUZZ: u32 = 2;

/// Where one hunk of the fix falls in the target's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum HunkState {
    /// The old side is in the target: the hunk applies.
    Applied {
        /// Target line minus the line written in the fix.
        offset: i64,
        /// Context lines ignored at each end (0 to [`MAX_FUZZ`]).
        fuzz: u32,
        /// The target's line for the hunk's first old-side line (ignored context
        /// included, as `patch` counts).
        target_line: u32,
    },
    /// The new side is in the target, not the old: the fix is already there.
    AlreadyApplied {
        /// The target's line for the hunk's first new-side line.
        at: u32,
    },
    /// Neither side is anywhere in the target's file.
    NotFound,
    /// The target's tree has no file of that name.
    FileMissing,
    /// The fix creates the file; the target does not have it.
    NewFile,
}

impl HunkState {
    /// Whether the hunk applies and is analysed.
    pub fn applies(&self) -> bool {
        matches!(self, HunkState::Applied { .. } | HunkState::NewFile)
    }
}

/// One hunk of the fix and where it falls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedHunk {
    /// Tree-relative path (the old path for a rename).
    pub path: String,
    /// The hunk's number in its file, from 1.
    pub hunk: u32,
    /// Its old-side start as written in the fix.
    pub fix_line: u32,
    /// Where it falls.
    pub state: HunkState,
}

/// A fix mapped onto a target's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Every hunk of the fix, in order.
    pub hunks: Vec<MappedHunk>,
    /// The fix with only the hunks that apply, every line number the target's: old-side
    /// numbers are the target's lines, new-side numbers the target's lines once those
    /// hunks are applied. Context ignored by fuzz is left out.
    pub patch: Patch,
}

/// Maps every hunk of `patch` onto the files of `tree`.
///
/// An unreadable file (or a path the tree refuses) is an error; a missing file is a
/// [`HunkState::FileMissing`] for each of its hunks.
pub fn map_onto(patch: &Patch, tree: &dyn SourceTree) -> Result<Mapping, SourceError> {
    let mut hunks = Vec::new();
    let mut files = Vec::new();
    for file in &patch.files {
        if let Some(mapped) = map_file(file, tree, &mut hunks)? {
            files.push(mapped);
        }
    }
    Ok(Mapping {
        hunks,
        patch: Patch {
            format: patch.format,
            mail: patch.mail.clone(),
            files,
        },
    })
}

/// Maps one file's hunks; returns the file with the hunks that apply, or `None` when
/// none does.
fn map_file(
    file: &FileDiff,
    tree: &dyn SourceTree,
    out: &mut Vec<MappedHunk>,
) -> Result<Option<FileDiff>, SourceError> {
    let record = |out: &mut Vec<MappedHunk>, n: usize, hunk: &Hunk, state| {
        out.push(MappedHunk {
            path: file
                .old_path
                .clone()
                .unwrap_or_else(|| file.path().to_owned()),
            hunk: n as u32 + 1,
            fix_line: hunk.old_start,
            state,
        })
    };
    if file.hunks.is_empty() {
        // A rename or mode change without content: nothing to place.
        return Ok(Some(file.clone()));
    }
    let Some(old_path) = &file.old_path else {
        // A new file: already there only if the target has it with the new content.
        let existing = tree.read(file.path())?;
        for (n, hunk) in file.hunks.iter().enumerate() {
            let state = match &existing {
                None => HunkState::NewFile,
                Some(text) => {
                    let target = Target::new(text);
                    let new_side: Vec<&str> = side(hunk, LineKind::Removed);
                    if target.is_exactly(&new_side) {
                        HunkState::AlreadyApplied { at: 1 }
                    } else {
                        HunkState::NotFound
                    }
                }
            };
            record(out, n, hunk, state);
        }
        return Ok(existing.is_none().then(|| file.clone()));
    };
    let Some(text) = tree.read(old_path)? else {
        for (n, hunk) in file.hunks.iter().enumerate() {
            record(out, n, hunk, HunkState::FileMissing);
        }
        return Ok(None);
    };
    let target = Target::new(&text);
    let mut mapped = FileDiff {
        hunks: Vec::new(),
        ..file.clone()
    };
    // How far the target's lines are from the fix's, by the hunks placed so far, and
    // the first target line a later hunk's changes may start at.
    let mut offset: i64 = 0;
    let mut floor: usize = 0;
    // Lines added minus removed by the hunks applied so far (the new side's numbering).
    let mut growth: i64 = 0;
    for (n, hunk) in file.hunks.iter().enumerate() {
        let found = place(hunk, &target, offset, floor);
        let state = match found {
            Some(Found::Old { base, fuzz, skip }) => {
                offset = base as i64 + 1 - i64::from(hunk.old_start);
                floor = base + changes_end(hunk);
                let remapped = remap(hunk, base, skip, growth);
                growth += i64::from(remapped.new_lines) - i64::from(remapped.old_lines);
                mapped.hunks.push(remapped);
                HunkState::Applied {
                    offset: base as i64 + 1 - i64::from(hunk.old_start),
                    fuzz,
                    target_line: base as u32 + 1,
                }
            }
            Some(Found::New { base }) => {
                // The lines after this hunk sit where they would after applying it.
                offset = (base as i64 + i64::from(hunk.new_lines))
                    - (i64::from(hunk.old_start) - 1 + i64::from(hunk.old_lines));
                floor = base + hunk.new_lines as usize;
                HunkState::AlreadyApplied {
                    at: base as u32 + 1,
                }
            }
            None => HunkState::NotFound,
        };
        record(out, n, hunk, state);
    }
    Ok((!mapped.hunks.is_empty()).then_some(mapped))
}

/// The old side (`drop` = Added) or new side (`drop` = Removed) of a hunk, as text.
fn side(hunk: &Hunk, drop: LineKind) -> Vec<&str> {
    hunk.lines
        .iter()
        .filter(|l| l.kind != drop)
        .map(|l| l.text.as_str())
        .collect()
}

/// Past the last old-side line the hunk changes, relative to its first old line: a
/// later hunk's changes cannot start before it.
fn changes_end(hunk: &Hunk) -> usize {
    let mut old = 0;
    let mut end = 0;
    for line in &hunk.lines {
        match line.kind {
            LineKind::Context => old += 1,
            LineKind::Removed => {
                old += 1;
                end = old;
            }
            LineKind::Added => end = old,
        }
    }
    end
}

/// Where a hunk was found: its old side at `base` (0-based target index of its first
/// old line) with `skip` context lines ignored at (start, end), or its new side.
enum Found {
    Old {
        base: usize,
        fuzz: u32,
        skip: (usize, usize),
    },
    New {
        base: usize,
    },
}

/// Finds a hunk: fuzz 0, 1, 2 in turn, each time the old side first, then the new.
fn place(hunk: &Hunk, target: &Target<'_>, offset: i64, floor: usize) -> Option<Found> {
    let old = side(hunk, LineKind::Added);
    let new = side(hunk, LineKind::Removed);
    let prefix = hunk
        .lines
        .iter()
        .take_while(|l| l.kind == LineKind::Context)
        .count();
    let suffix = hunk
        .lines
        .iter()
        .rev()
        .take_while(|l| l.kind == LineKind::Context)
        .count();
    let context = prefix.max(suffix);
    let expected = i64::from(hunk.old_start) - 1 + offset;
    // As `patch`: never more fuzz than the hunk has context, so only context lines are
    // ever ignored (more would skip removed lines and apply part of the hunk).
    let most = MAX_FUZZ.min(u32::try_from(context).unwrap_or(MAX_FUZZ));
    for fuzz in 0..=most {
        let fuzz_lines = fuzz as usize;
        // As `patch`: the short side of an asymmetric hunk is its file's start or end,
        // until the fuzz makes up the difference.
        let prefix_fuzz = (fuzz_lines + prefix).checked_sub(context);
        let suffix_fuzz = (fuzz_lines + suffix).checked_sub(context);
        let at_start = prefix_fuzz.is_none() && hunk.old_start <= 1;
        let at_end = suffix_fuzz.is_none();
        let skip = (prefix_fuzz.unwrap_or(0), suffix_fuzz.unwrap_or(0));
        let anchor = Anchor { at_start, at_end };
        if let Some(base) = target.find(&old, skip, expected, floor, anchor) {
            return Some(Found::Old { base, fuzz, skip });
        }
        if let Some(base) = target.find(&new, skip, expected, floor, anchor) {
            return Some(Found::New { base });
        }
    }
    None
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    at_start: bool,
    at_end: bool,
}

/// The hunk rewritten to the target's numbering: its first old line at `base`, `skip`
/// context lines dropped at each end, new-side numbers moved by `growth`.
fn remap(hunk: &Hunk, base: usize, skip: (usize, usize), growth: i64) -> Hunk {
    let kept = &hunk.lines[skip.0..hunk.lines.len() - skip.1];
    let old_start = (base + skip.0 + 1) as u32;
    let new_start = (i64::from(old_start) + growth).max(1) as u32;
    let mut old_no = old_start;
    let mut new_no = new_start;
    let mut lines = Vec::with_capacity(kept.len());
    for line in kept {
        let (old_line, new_line) = match line.kind {
            LineKind::Context => (Some(old_no), Some(new_no)),
            LineKind::Removed => (Some(old_no), None),
            LineKind::Added => (None, Some(new_no)),
        };
        if old_line.is_some() {
            old_no = old_no.saturating_add(1);
        }
        if new_line.is_some() {
            new_no = new_no.saturating_add(1);
        }
        lines.push(HunkLine {
            old_line,
            new_line,
            ..line.clone()
        });
    }
    let old_lines = old_no - old_start;
    let new_lines = new_no - new_start;
    Hunk {
        // An empty side starts at the line before, as diff writes it.
        old_start: if old_lines == 0 {
            old_start - 1
        } else {
            old_start
        },
        old_lines,
        new_start: if new_lines == 0 {
            new_start - 1
        } else {
            new_start
        },
        new_lines,
        section: hunk.section.clone(),
        input_line: hunk.input_line,
        lines,
    }
}

/// The 2^61 - 1 Mersenne prime: the rolling hash's modulus.
const MODULUS: u64 = (1 << 61) - 1;
/// The rolling hash's base (any value well inside the modulus).
const BASE: u64 = 0x1f3d_5b79_a4c2_e8b1 % MODULUS;

fn mul_mod(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    let folded = (product & u128::from(MODULUS)) + (product >> 61);
    let folded = folded as u64;
    if folded >= MODULUS {
        folded - MODULUS
    } else {
        folded
    }
}

fn add_mod(a: u64, b: u64) -> u64 {
    let sum = a + b;
    if sum >= MODULUS {
        sum - MODULUS
    } else {
        sum
    }
}

/// A line's hash (FNV-1a), below the modulus and never 0.
fn line_hash(line: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in line {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % (MODULUS - 1) + 1
}

/// The target file, its lines hashed for the search.
struct Target<'t> {
    /// Lines as text; bytes that are not UTF-8 replaced as in a hunk's text.
    lines: Vec<Cow<'t, str>>,
    /// `prefix[i]`: the rolling hash of lines `0..i`.
    prefix: Vec<u64>,
    /// `powers[i]`: BASE^i.
    powers: Vec<u64>,
    /// Each line's hash and the lines (0-based, ascending) that have it: a hunk is looked
    /// for only where its rarest line is, not at every line of the file.
    at: HashMap<u64, Vec<usize>>,
}

impl<'t> Target<'t> {
    fn new(text: &'t [u8]) -> Target<'t> {
        let lines: Vec<Cow<'t, str>> = split_lines(text)
            .into_iter()
            .map(String::from_utf8_lossy)
            .collect();
        let mut prefix = Vec::with_capacity(lines.len() + 1);
        let mut powers = Vec::with_capacity(lines.len() + 1);
        let mut at: HashMap<u64, Vec<usize>> = HashMap::new();
        prefix.push(0);
        powers.push(1);
        for (n, line) in lines.iter().enumerate() {
            let hash = line_hash(line.as_bytes());
            at.entry(hash).or_default().push(n);
            let last = prefix[prefix.len() - 1];
            prefix.push(add_mod(mul_mod(last, BASE), hash));
            let power = powers[powers.len() - 1];
            powers.push(mul_mod(power, BASE));
        }
        Target {
            lines,
            prefix,
            powers,
            at,
        }
    }

    /// The hash of target lines `start..start + len`.
    fn window(&self, start: usize, len: usize) -> u64 {
        let whole = self.prefix[start + len];
        let before = mul_mod(self.prefix[start], self.powers[len]);
        add_mod(whole, MODULUS - before)
    }

    /// Whether the file is exactly these lines.
    fn is_exactly(&self, pattern: &[&str]) -> bool {
        self.lines.len() == pattern.len()
            && self
                .lines
                .iter()
                .zip(pattern)
                .all(|(a, b)| a.as_ref() == *b)
    }

    /// The base (0-based target line of `pattern[0]`) nearest to `expected` where the
    /// pattern, without `skip` lines at each end, matches; the ignored lines must still
    /// fall inside the file, and the matched lines at or after `floor`.
    fn find(
        &self,
        pattern: &[&str],
        skip: (usize, usize),
        expected: i64,
        floor: usize,
        anchor: Anchor,
    ) -> Option<usize> {
        let n = self.lines.len();
        let len = pattern.len();
        let kept = pattern.get(skip.0..len.checked_sub(skip.1)?)?;
        if kept.is_empty() || len > n {
            // Nothing to match is no evidence of a place.
            return None;
        }
        let mut hash = 0;
        for line in kept {
            hash = add_mod(mul_mod(hash, BASE), line_hash(line.as_bytes()));
        }
        let highest = n - len;
        let matches = |base: usize| {
            base + skip.0 >= floor
                && self.window(base + skip.0, kept.len()) == hash
                && self.lines[base + skip.0..base + skip.0 + kept.len()]
                    .iter()
                    .zip(kept)
                    .all(|(a, b)| a.as_ref() == *b)
        };
        if anchor.at_start || anchor.at_end {
            let base = if anchor.at_start { 0 } else { highest };
            // Anchored at both ends: the hunk is the whole file.
            if anchor.at_start && anchor.at_end && highest != 0 {
                return None;
            }
            return matches(base).then_some(base);
        }
        let expected = expected.clamp(0, highest as i64) as usize;
        // The candidates: where the pattern's rarest line is (a line the file does not
        // have rules the pattern out). Each hunk costs the lines that share its rarest
        // line, not the whole file.
        let mut rarest: Option<(usize, &[usize])> = None;
        for (j, line) in kept.iter().enumerate() {
            let found: &[usize] = self
                .at
                .get(&line_hash(line.as_bytes()))
                .map_or(&[], Vec::as_slice);
            if rarest.is_none_or(|(_, best)| found.len() < best.len()) {
                rarest = Some((j, found));
            }
        }
        let (j, lines) = rarest?;
        let shift = j + skip.0;
        // Outward from the expected line, nearest first; at equal distance the one below,
        // as `patch` searches. The first that matches is the answer.
        let split = lines.partition_point(|&line| line < expected + shift);
        let (mut above, mut below) = (lines[..split].iter().rev(), lines[split..].iter());
        let (mut up, mut down) = (above.next(), below.next());
        loop {
            let take_down = match (up, down) {
                (None, None) => return None,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(&u), Some(&d)) => d - (expected + shift) <= expected + shift - u,
            };
            let line = if take_down {
                let line = down;
                down = below.next();
                line
            } else {
                let line = up;
                up = above.next();
                line
            };
            let Some(base) = line.and_then(|&l| l.checked_sub(shift)) else {
                continue;
            };
            if base <= highest && matches(base) {
                return Some(base);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rolling_hash_of_a_window_is_the_hash_of_its_lines() {
        let text = b"a\nb\nc\nd\n";
        let target = Target::new(text);
        let mut direct = 0;
        for line in ["b", "c"] {
            direct = add_mod(mul_mod(direct, BASE), line_hash(line.as_bytes()));
        }
        assert_eq!(target.window(1, 2), direct);
    }

    /// The outward search `patch` does, line by line: below first at equal distance.
    fn brute_force(
        target: &Target<'_>,
        kept: &[&str],
        expected: usize,
        floor: usize,
    ) -> Option<usize> {
        let highest = target.lines.len().checked_sub(kept.len())?;
        let expected = expected.min(highest);
        let matches = |base: usize| {
            base >= floor
                && target.lines[base..base + kept.len()]
                    .iter()
                    .zip(kept)
                    .all(|(a, b)| a.as_ref() == *b)
        };
        for distance in 0..=expected.max(highest - expected) {
            if expected + distance <= highest && matches(expected + distance) {
                return Some(expected + distance);
            }
            if distance > 0 && distance <= expected && matches(expected - distance) {
                return Some(expected - distance);
            }
        }
        None
    }

    #[test]
    fn the_indexed_search_finds_what_a_line_by_line_search_finds() {
        // Few distinct lines, so that patterns match in many places.
        let alphabet = ["a", "b", "}", "", "\treturn 0;"];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let text: String = (0..300)
            .map(|_| format!("{}\n", alphabet[next(5)]))
            .collect();
        let target = Target::new(text.as_bytes());
        let anchor = Anchor {
            at_start: false,
            at_end: false,
        };
        for _ in 0..2_000 {
            let len = 1 + next(4);
            let pattern: Vec<&str> = (0..len).map(|_| alphabet[next(5)]).collect();
            let expected = next(320);
            let floor = next(50);
            assert_eq!(
                target.find(&pattern, (0, 0), expected as i64, floor, anchor),
                brute_force(&target, &pattern, expected, floor),
                "{pattern:?} near {expected} from {floor}"
            );
        }
        assert_eq!(target.find(&["no such line"], (0, 0), 5, 0, anchor), None);
    }

    /// A tree of one file.
    struct OneFile(&'static str, &'static str);

    impl SourceTree for OneFile {
        fn read(&self, path: &str) -> Result<Option<Vec<u8>>, SourceError> {
            Ok((path == self.0).then(|| self.1.as_bytes().to_vec()))
        }
    }

    /// Security review: fuzz beyond a hunk's context ignored its removed lines, so a
    /// hunk with one line of context applied in part (`a` kept, `c` never added).
    #[test]
    fn fuzz_never_ignores_more_than_the_hunks_context() {
        let fix =
            crate::patch::parse(b"--- a/f.c\n+++ b/f.c\n@@ -1,4 +1,2 @@\n-a\n-b\n-x\n+c\n d\n")
                .expect("a valid patch");
        let mapping = map_onto(&fix, &OneFile("f.c", "q\nb\nx\nd\nz\n")).expect("mapped");
        assert!(
            !mapping.hunks[0].state.applies(),
            "{:?}",
            mapping.hunks[0].state
        );
        // With its context there, it applies as it is.
        let mapping = map_onto(&fix, &OneFile("f.c", "a\nb\nx\nd\nz\n")).expect("mapped");
        assert!(
            mapping.hunks[0].state.applies(),
            "{:?}",
            mapping.hunks[0].state
        );
    }
}
