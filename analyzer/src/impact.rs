//! From a fix and one object's tables to the functions a live patch must replace.
//!
//! Pure functions over a [`Patch`] and a [`KernelIndex`], and the target's source when
//! one is given ([`analyze_on`]): nothing here reads files but through a
//! [`SourceTree`]. First, whose line numbers: with the source, each hunk is found in it
//! and renumbered ([`crate::onto`]); without, each hunk's heading is checked against the
//! debug information ([`crate::heading`]). A hunk that does not apply or does not match
//! the build is reported and analysed nowhere. Then, for each object of the index:
//!
//! 1. The old-side lines each hunk changes ([`changed_lines`]); a pure insertion changes
//!    the lines around its insertion point.
//! 2. The functions those lines belong to: where the line table puts their code (directly
//!    or as an inlined copy), and the function declared last above the line (the line
//!    table misses code the compiler folded into a caller's instruction), unless the line
//!    is below the last line of that function's code, between functions.
//! 3. What must be replaced: each changed function's out-of-line instances and clones,
//!    and every function it was inlined into.
//! 4. Anything that cannot be replaced itself (no ftrace entry, a `.cold` part, init
//!    code, a clone whose calling convention changed) is replaced through its callers,
//!    recursively, with the reason kept at each step.
//!
//! With the source, the lines using a changed macro or enumerator are analysed with the
//! fix's own, and changed types and data are reported ([`crate::expand`]); a changed
//! line that nothing ties to code is reported as not analysable, never as nothing to
//! replace. With the build's configuration as well, what the build does not compile is
//! left out and the fix's lines there are reported as not compiled.

use crate::dwarf::path_matches;
use crate::expand::{
    self, DataChange, Expansion, Followed, NotAnalysable, NotCompiled, SourceLine,
};
use crate::heading::{check_against_index, HunkVerdict};
use crate::index::{Callee, IndexError, KernelIndex, ObjectIndex, Place, SymbolsByAddress};
use crate::onto::{map_onto, HunkState};
use crate::patch::{Hunk, HunkLine, LineKind, Patch};
use crate::pitfalls::{self, Pitfall, PitfallKind};
use crate::source::{KernelConfig, SourceError, SourceIndex, SourceTree};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The version of [`ImpactReport`]'s JSON form; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 5;

/// The old-side lines a fix changes in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedLines {
    /// Tree-relative path (the old path for a rename).
    pub path: String,
    /// Old-side line numbers, ascending.
    pub lines: Vec<u32>,
}

/// A function whose source a fix changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFunction {
    /// Name.
    pub name: String,
    /// The object whose debug information has it.
    pub object: String,
    /// Declaring file, as the debug information names it.
    pub decl_file: String,
    /// Declaring line.
    pub decl_line: u32,
    /// How the change was tied to it.
    pub evidence: String,
    /// The changed lines (in the report's [`LineBasis`]) that hold its code or lie in its
    /// body, the lines using a changed macro included.
    #[serde(default)]
    pub lines: Vec<SourceLine>,
}

/// A function the live patch module must replace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The symbol, clone suffix included (`klp_func.old_name`).
    pub symbol: String,
    /// `vmlinux` or the module name (`klp_object.name`).
    pub object: String,
    /// `klp_func.old_sympos`.
    pub old_sympos: u32,
    /// Whether ftrace can redirect it (always true for a replacement; kept for the JSON
    /// form's readers).
    pub traceable: bool,
    /// Why, in order: from the changed line to this function ([`Step`]s for people).
    pub reasons: Vec<String>,
    /// The same way as steps, for drawing it.
    #[serde(default)]
    pub path: Vec<Step>,
    /// The file declaring its function, as the debug information names it.
    #[serde(default)]
    pub file: String,
}

/// One step of the way from a changed function to one the live patch replaces (or
/// cannot): [`Replacement::path`], [`Unpatchable::path`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum Step {
    /// The fix changes `function`'s code; `evidence` says how that was found.
    Changed {
        /// The function.
        function: String,
        /// How the change was tied to it ([`ChangedFunction::evidence`]).
        evidence: String,
    },
    /// `function` is inlined into `into` at `file:line`.
    Inlined {
        /// The inlined function.
        function: String,
        /// The function holding the inlined copy.
        into: String,
        /// The file of the call (its last path component), `?` when unknown.
        file: String,
        /// The line of the call.
        line: u32,
        /// The functions inlined into `into` that the copy sits in, innermost first
        /// (`bump()` in `bump_pair()` in `pair_a()`: `[bump_pair]`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        through: Vec<String>,
    },
    /// `symbol` cannot be replaced, for `why`.
    Blocked {
        /// The symbol (or function name).
        symbol: String,
        /// Why not.
        why: String,
        /// For a clone whose calling convention changed: how.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        abi_change: Option<String>,
    },
    /// `caller` calls (or tail-calls) `callee`, which cannot be replaced.
    Called {
        /// The calling function.
        caller: String,
        /// The symbol called.
        callee: String,
        /// A tail call (a jump).
        tail: bool,
    },
    /// `.cold` parts of `of` (split off by gcc) go with it.
    ColdParts {
        /// The parts' symbols.
        parts: Vec<String>,
        /// The symbol they belong to.
        of: String,
    },
    /// `symbol` has an ftrace entry: it is replaced.
    Entry {
        /// The symbol.
        symbol: String,
    },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Changed { function, evidence } => write!(f, "{function}() changed ({evidence})"),
            Step::Inlined {
                function,
                into,
                file,
                line,
                through,
            } => {
                write!(f, "{function}() is inlined into {into}() at {file}:{line}")?;
                if !through.is_empty() {
                    let names: Vec<String> = through.iter().map(|n| format!("{n}()")).collect();
                    write!(f, " (through {})", names.join(", "))?;
                }
                Ok(())
            }
            Step::Blocked { symbol, why, .. } => write!(f, "{symbol} cannot be replaced: {why}"),
            Step::Called {
                caller,
                callee,
                tail,
            } => {
                let how = if *tail { "tail-calls" } else { "calls" };
                write!(f, "{caller}() {how} {callee}")
            }
            Step::ColdParts { parts, of } => {
                write!(f, "{} is part of {of}, replaced with it", parts.join(", "))
            }
            Step::Entry { symbol } => write!(f, "{symbol} has an ftrace entry"),
        }
    }
}

/// The steps of a path as sentences.
fn reasons_of(path: &[Step]) -> Vec<String> {
    path.iter().map(Step::to_string).collect()
}

/// A function that holds changed code but cannot be replaced, and how that was handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpatchable {
    /// The symbol (or the function name when it has no symbol of its own).
    pub symbol: String,
    /// `vmlinux` or the module name.
    pub object: String,
    /// Why it cannot be replaced.
    pub why: String,
    /// What was done instead.
    pub resolution: String,
    /// The way from a changed function to it, ending in its [`Step::Blocked`].
    #[serde(default)]
    pub path: Vec<Step>,
}

/// The analysis of one fix against one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The objects the fix's files have code in: `vmlinux`, then modules.
    pub objects: Vec<String>,
    /// Old-side lines changed, per file.
    pub changed_lines: Vec<ChangedLines>,
    /// Files of the fix that contribute no code to any object analysed.
    pub files_without_code: Vec<String>,
    /// Functions whose source changed.
    pub changed_functions: Vec<ChangedFunction>,
    /// What the module must replace.
    pub replace: Vec<Replacement>,
    /// Functions that cannot be replaced themselves.
    pub unpatchable: Vec<Unpatchable>,
    /// What in the fix needs a reviewer's care (kpatch patch author guide).
    pub pitfalls: Vec<Pitfall>,
    /// Compilation units the index left out (their DWARF could not be decoded) that may
    /// hold code of the changed files: the report may miss functions there.
    #[serde(default)]
    pub incomplete: Vec<IncompleteUnit>,
    /// Whose line numbers [`ImpactReport::changed_lines`] are.
    #[serde(default)]
    pub basis: LineBasis,
    /// Each hunk of the fix: where it falls in the target's source, or what the debug
    /// information says of its heading; and whether it was analysed.
    #[serde(default)]
    pub hunks: Vec<HunkReport>,
    /// Changed macros and enumerators, and the code that uses them.
    #[serde(default)]
    pub expansions: Vec<Expansion>,
    /// Changes to types, global data and constants used in them.
    #[serde(default)]
    pub data_changes: Vec<DataChange>,
    /// Changed lines the analysis cannot tie to code.
    #[serde(default)]
    pub not_analysable: Vec<NotAnalysable>,
    /// Changed lines this build does not compile, by its configuration: they change
    /// nothing here.
    #[serde(default)]
    pub not_compiled: Vec<NotCompiled>,
}

/// Whose line numbers a report's lines are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineBasis {
    /// The target's own source: each hunk was found there ([`crate::onto`]).
    TargetSource,
    /// As written in the fix, each hunk's heading checked against the debug information
    /// ([`crate::heading`]).
    #[default]
    AsWritten,
}

impl std::fmt::Display for LineBasis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LineBasis::TargetSource => "target source",
            LineBasis::AsWritten => "as written, checked against DWARF",
        })
    }
}

/// What became of one hunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HunkOutcome {
    /// Where it falls in the target's source.
    Placed(HunkState),
    /// What the debug information says of its heading.
    Checked(HunkVerdict),
}

/// One hunk of the fix in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkReport {
    /// Tree-relative path (the old path for a rename).
    pub path: String,
    /// The hunk's number in its file, from 1.
    pub hunk: u32,
    /// Its old-side start as written in the fix.
    pub fix_line: u32,
    /// What became of it.
    pub outcome: HunkOutcome,
    /// Whether its lines were analysed: a hunk that does not apply, or does not match
    /// the build, is not analysed anywhere.
    pub analysed: bool,
}

/// The target's source for [`analyze_on`]: the tree, and its identifier index when
/// there is one (without it, a changed macro's uses are only looked for in the fix's
/// files and the macro's own), and the build's configuration when known (without it,
/// every conditional's code counts as compiled).
#[derive(Clone, Copy)]
pub struct TargetSource<'a> {
    /// The tree.
    pub tree: &'a dyn SourceTree,
    /// Its identifier index.
    pub index: Option<&'a SourceIndex>,
    /// The build's configuration: its `.config` or `include/generated/autoconf.h`.
    pub config: Option<&'a KernelConfig>,
}

/// A compilation unit the analysis could not look into, and why it may matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncompleteUnit {
    /// `vmlinux` or the module.
    pub object: String,
    /// The unit's offset in `.debug_info`.
    pub unit_offset: u64,
    /// Its source file, when known.
    pub unit_name: Option<String>,
    /// Why it was left out of the index.
    pub error: String,
    /// Why it may hold code of this fix.
    pub why: String,
}

/// The skipped units of `object` that may hold code of the changed files: a unit named
/// after a changed file; any unit when a header changes (its code is inlined anywhere);
/// a unit whose name is unknown, or the unreadable rest of a section.
fn incomplete_in(object: &ObjectIndex, changed: &[ChangedLines]) -> Vec<IncompleteUnit> {
    let header = changed.iter().find(|f| !f.path.ends_with(".c"));
    object
        .skipped
        .iter()
        .filter_map(|unit| {
            let why = if unit.rest_of_section {
                "its header could not be read, so neither it nor the units after it were indexed"
                    .to_owned()
            } else if let Some(file) = unit
                .name
                .as_deref()
                .and_then(|name| changed.iter().find(|f| path_matches(name, &f.path)))
            {
                format!("it is the unit of {}", file.path)
            } else if unit.name.is_none() {
                "its source file is unknown".to_owned()
            } else if let Some(header) = header {
                format!(
                    "{} changes, and a header's code can be inlined into any unit",
                    header.path
                )
            } else {
                return None;
            };
            Some(IncompleteUnit {
                object: object.name.clone(),
                unit_offset: unit.offset,
                unit_name: unit.name.clone(),
                error: unit.error.clone(),
                why,
            })
        })
        .collect()
}

/// The old-side lines each file's hunks change. New files have no old side and are left
/// out. For a pure insertion, the old lines just before and after the insertion point
/// count as changed (code is added between them); a neighbour that is blank or only a
/// comment says nothing about where the code goes and is left out, unless both are, when
/// the nearest lines of the hunk that hold code on each side count instead (or, when it
/// has none, the two neighbours).
pub fn changed_lines(patch: &Patch) -> Vec<ChangedLines> {
    let mut per_file: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for file in &patch.files {
        let Some(path) = &file.old_path else { continue };
        let lines = per_file.entry(path.clone()).or_default();
        for hunk in &file.hunks {
            lines.extend(hunk_changed_lines(hunk));
        }
    }
    per_file
        .into_iter()
        .filter(|(_, lines)| !lines.is_empty())
        .map(|(path, lines)| ChangedLines {
            path,
            lines: lines.into_iter().collect(),
        })
        .collect()
}

/// Whether a line of C holds nothing but white space or a comment (as far as one line
/// shows: `*` followed by a space opens no code).
pub(crate) fn is_blank_or_comment(text: &str) -> bool {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with("*/") {
        return true;
    }
    if let Some(rest) = trimmed.strip_prefix("/*") {
        // A comment that opens here: only a comment if nothing follows its end.
        return rest
            .find("*/")
            .is_none_or(|end| rest[end + 2..].trim().is_empty());
    }
    // A continuation line of a block comment: ` * text`, ` *`.
    trimmed == "*" || trimmed.starts_with("* ") || trimmed.starts_with("*\t")
}

/// The blocks of changes of a hunk's lines: each run of removed and added lines between
/// context lines, as a range of indexes into `lines`.
pub fn change_blocks(lines: &[HunkLine]) -> Vec<std::ops::Range<usize>> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].kind == LineKind::Context {
            i += 1;
            continue;
        }
        let start = i;
        while i < lines.len() && lines[i].kind != LineKind::Context {
            i += 1;
        }
        blocks.push(start..i);
    }
    blocks
}

/// The old-side lines one hunk changes, ascending (see [`changed_lines`]).
pub(crate) fn hunk_changed_lines(hunk: &Hunk) -> Vec<u32> {
    let lines = &hunk.lines;
    let mut found = BTreeSet::new();
    let code = |i: usize| lines[i].old_line.is_some() && !is_blank_or_comment(&lines[i].text);
    for std::ops::Range { start, end: i } in change_blocks(lines) {
        // A block of changes: removed lines are the change; an insertion changes what
        // is around it.
        let block = &lines[start..i];
        if block.iter().any(|l| l.kind == LineKind::Removed) {
            found.extend(block.iter().filter_map(|l| l.old_line));
            continue;
        }
        let before = start.checked_sub(1);
        let after = (i < lines.len()).then_some(i);
        let mut coded: Vec<usize> = [before, after]
            .into_iter()
            .flatten()
            .filter(|&n| code(n))
            .collect();
        // Code added just before a closing brace is in what the line before it is in:
        // the brace line itself often has no code of its own in the line table.
        if coded.len() == 2 && lines[coded[1]].text.trim() == "}" {
            coded.pop();
        }
        if !coded.is_empty() {
            found.extend(coded.iter().filter_map(|&n| lines[n].old_line));
            continue;
        }
        let nearest_before = (0..start).rev().find(|&n| code(n));
        let nearest_after = (i..lines.len()).find(|&n| code(n));
        if nearest_before.is_none() && nearest_after.is_none() {
            found.extend(
                [before, after]
                    .into_iter()
                    .flatten()
                    .filter_map(|n| lines[n].old_line),
            );
        } else {
            found.extend(
                [nearest_before, nearest_after]
                    .into_iter()
                    .flatten()
                    .filter_map(|n| lines[n].old_line),
            );
        }
    }
    found.into_iter().collect()
}

/// Why a fix could not be analysed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalysisError {
    /// The index is damaged (its line table is checked as it is read).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// No file the fix changes has code or functions in any object: a fix for another
    /// tree, or paths with the wrong prefix.
    #[error("none of the files the fix changes ({}) is known to {}: is the fix for this kernel, with paths relative to the top of the tree?", .paths.join(", "), objects_named(.objects))]
    NoKnownFile {
        /// The old-side paths of the fix.
        paths: Vec<String>,
        /// The objects analysed.
        objects: Vec<String>,
    },
    /// The fix only adds files: nothing in the running kernel changes.
    #[error("the fix only adds new files: no function of the running kernel changes")]
    NothingChanged,
    /// The target's source could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// `vmlinux`, or `vmlinux and 12 module(s)`, or `this kernel build` when no object was read.
fn objects_named(objects: &[String]) -> String {
    match objects {
        [] => "this kernel build".to_owned(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} and {} module(s)", rest.len()),
    }
}

/// The objects by name when there are a few, else the first and a count: a header fix
/// reaches hundreds of modules, which the JSON form lists.
fn summary(objects: &[String]) -> String {
    if objects.len() <= 4 {
        objects.join(", ")
    } else {
        objects_named(objects)
    }
}

/// Analyses a fix against every object of a kernel build's index, at the line numbers
/// written in the fix: [`analyze_on`] without the target's source.
pub fn analyze(patch: &Patch, index: &KernelIndex) -> Result<ImpactReport, AnalysisError> {
    analyze_on(patch, index, None)
}

/// Analyses a fix against every object of a kernel build's index.
///
/// With the target's source, each hunk is first found there ([`crate::onto`]) and only
/// the hunks that apply are analysed, at the target's line numbers; changed macros and
/// enumerators are followed to the code using them, and changes to types and data are
/// reported ([`crate::expand`]); with the build's configuration, the code the build does
/// not compile is left out. Without it, each hunk's heading is checked against the
/// debug information ([`crate::heading`]): a hunk the build contradicts is not analysed,
/// and a changed line no function holds is reported as not analysable.
pub fn analyze_on(
    patch: &Patch,
    index: &KernelIndex,
    source: Option<TargetSource<'_>>,
) -> Result<ImpactReport, AnalysisError> {
    if changed_lines(patch).is_empty() {
        return Err(AnalysisError::NothingChanged);
    }
    let (basis, analysed, hunks) = match source {
        Some(source) => {
            let mapping = map_onto(patch, source.tree)?;
            let hunks = mapping
                .hunks
                .into_iter()
                .map(|h| HunkReport {
                    analysed: h.state.applies(),
                    path: h.path,
                    hunk: h.hunk,
                    fix_line: h.fix_line,
                    outcome: HunkOutcome::Placed(h.state),
                })
                .collect();
            (LineBasis::TargetSource, mapping.patch, hunks)
        }
        None => {
            let checks = check_against_index(patch, index)?;
            let mut kept = patch.clone();
            let mut verdicts = checks.iter();
            for file in &mut kept.files {
                if file.old_path.is_none() {
                    continue;
                }
                // The checks come in file and hunk order, one per hunk of a file with
                // an old side.
                let keep: Vec<bool> = file
                    .hunks
                    .iter()
                    .map(|_| verdicts.next().is_none_or(|c| c.verdict.analysed()))
                    .collect();
                let mut keep = keep.into_iter();
                file.hunks.retain(|_| keep.next().unwrap_or(true));
            }
            let hunks = checks
                .into_iter()
                .map(|c| HunkReport {
                    analysed: c.verdict.analysed(),
                    path: c.path,
                    hunk: c.hunk,
                    fix_line: c.fix_line,
                    outcome: HunkOutcome::Checked(c.verdict),
                })
                .collect();
            (LineBasis::AsWritten, kept, hunks)
        }
    };
    let changed = changed_lines(&analysed);
    let mut reach = match source {
        Some(source) => {
            let paths: Vec<String> = changed.iter().map(|c| c.path.clone()).collect();
            let redefined = expand::definedness_changes(&analysed);
            let restructured = expand::conditionals_changed(&analysed);
            expand::reach(
                &changed,
                &expand::Target {
                    tree: source.tree,
                    index: source.index,
                    config: source.config,
                    paths: &paths,
                    redefined: &redefined,
                    restructured: &restructured,
                },
            )?
        }
        None => expand::Reach::default(),
    };
    // The configuration is checked against the build: a line of the fix it says is not
    // compiled but where the line table has code means it is not this build's (or a
    // CONFIG_ macro came from elsewhere, a Makefile's -D): the line is analysed after
    // all, and what the configuration left out elsewhere cannot be trusted, which is said.
    let fix_lines: Vec<(String, u32)> = reach
        .not_compiled
        .iter()
        .map(|n| (n.at.path.clone(), n.at.line))
        .collect();
    let contradicted = contradicted_by_the_build(&fix_lines, index)?;
    if !contradicted.is_empty() {
        reach.not_compiled.retain(|n| {
            let keep = !contradicted.contains(&(n.at.path.clone(), n.at.line));
            if !keep {
                reach.not_analysable.push(NotAnalysable {
                    at: n.at.clone(),
                    text: n.text.clone(),
                    why: format!(
                        "the build's configuration says this line is not compiled ({}), but the \
                         build has code of it: the configuration is not this build's, so code it \
                         left out elsewhere may be missed",
                        n.why
                    ),
                });
            }
            keep
        });
    }
    // Likewise the uses the configuration left out: where the build has code of one, it
    // is analysed after all (and the analysis is incomplete, as above).
    let uses: Vec<(String, u32)> = reach.left_out.keys().cloned().collect();
    for (path, line) in contradicted_by_the_build(&uses, index)? {
        let expansion = reach.left_out[&(path.clone(), line)];
        let (name, changed_at) = {
            let e = &reach.expansions[expansion];
            (e.name.clone(), e.changed.clone())
        };
        reach.expansions[expansion].uncompiled_uses = reach.expansions[expansion]
            .uncompiled_uses
            .saturating_sub(1);
        let at = SourceLine {
            path: path.clone(),
            line,
        };
        if !reach.expansions[expansion].uses.contains(&at) {
            reach.expansions[expansion].uses.push(at.clone());
        }
        reach.via.entry((path.clone(), line)).or_insert_with(|| {
            format!(
                "which uses {name} (changed at {}:{})",
                changed_at.path, changed_at.line
            )
        });
        reach.extra.push(ChangedLines {
            path: path.clone(),
            lines: vec![line],
        });
        reach.not_analysable.push(NotAnalysable {
            at,
            text: String::new(),
            why: format!(
                "the build's configuration says this use of {name} is not compiled, but the \
                 build has code of it: the configuration is not this build's, so code it left \
                 out elsewhere may be missed"
            ),
        });
    }
    // The fix's lines and the lines using what it changes, per file; a line this build
    // does not compile holds no code of it (its file is kept, for `files_without_code`).
    let not_compiled: HashSet<(&str, u32)> = reach
        .not_compiled
        .iter()
        .map(|n| (n.at.path.as_str(), n.at.line))
        .collect();
    let mut all_lines: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for file in changed.iter().chain(&reach.extra) {
        all_lines.entry(file.path.clone()).or_default().extend(
            file.lines
                .iter()
                .filter(|&&line| !not_compiled.contains(&(file.path.as_str(), line))),
        );
    }
    let all: Vec<ChangedLines> = all_lines
        .into_iter()
        .map(|(path, lines)| ChangedLines {
            path,
            lines: lines.into_iter().collect(),
        })
        .collect();
    let mut changed_functions = Vec::new();
    let mut replace = Vec::new();
    let mut unpatchable = Vec::new();
    let mut has_code: BTreeSet<&str> = BTreeSet::new();
    let mut objects = Vec::new();
    // Every (path, line) some object ties to a function, and the function names.
    let mut tied: BTreeMap<(String, u32), BTreeSet<String>> = BTreeMap::new();
    for object in &index.objects {
        let Some(findings) = changed_functions_in(object, &all, &reach.via, &mut has_code)? else {
            continue;
        };
        let mut lines_of: BTreeMap<u32, Vec<SourceLine>> = BTreeMap::new();
        for ((path, line), fs) in findings.by_line {
            for &f in &fs {
                lines_of.entry(f).or_default().push(SourceLine {
                    path: path.clone(),
                    line,
                });
            }
            let names = tied.entry((path, line)).or_default();
            names.extend(fs.iter().map(|&f| object.function_name(f).to_owned()));
        }
        let functions = findings.functions;
        objects.push(object.name.clone());
        let mut walk = Walk::new(object);
        for (&f, evidence) in &functions {
            let function = &object.functions[f as usize];
            changed_functions.push(ChangedFunction {
                name: function.name.clone(),
                object: object.name.clone(),
                decl_file: object.file_name(function.decl_file).to_owned(),
                decl_line: function.decl_line,
                evidence: evidence.clone(),
                lines: lines_of.remove(&f).unwrap_or_default(),
            });
            walk.function(
                f,
                vec![Step::Changed {
                    function: function.name.clone(),
                    evidence: evidence.clone(),
                }],
            );
        }
        walk.run();
        replace.extend(walk.replace.into_values());
        unpatchable.extend(walk.unpatchable.into_values());
    }
    let incomplete: Vec<IncompleteUnit> = index
        .objects
        .iter()
        .flat_map(|object| incomplete_in(object, &all))
        .collect();
    // Nothing of the fix in any object, and no left-out unit named after one of its
    // files: the fix is for another tree. (A left-out unit of unknown contents, such as
    // a module that could not be read at all, does not make a wrong kernel look right.)
    // A header is different: one of macros, types and constants has no code of its own.
    let a_changed_unit_left_out = incomplete.iter().any(|unit| {
        unit.unit_name
            .as_deref()
            .is_some_and(|name| all.iter().any(|f| path_matches(name, &f.path)))
    });
    let a_header_changes = changed.iter().any(|f| !f.path.ends_with(".c"));
    if !changed.is_empty()
        && has_code.is_empty()
        && !a_changed_unit_left_out
        && !a_header_changes
        && reach.expansions.is_empty()
        && reach.data_changes.is_empty()
        && reach.not_compiled.is_empty()
    {
        return Err(AnalysisError::NoKnownFile {
            paths: changed.iter().map(|f| f.path.clone()).collect(),
            objects: index.objects.iter().map(|o| o.name.clone()).collect(),
        });
    }
    let files_without_code: Vec<String> = changed
        .iter()
        .filter(|file| !has_code.contains(file.path.as_str()))
        .map(|file| file.path.clone())
        .collect();
    let mut not_analysable = std::mem::take(&mut reach.not_analysable);
    not_analysable.extend(unexplained_lines(
        &changed,
        &analysed,
        &tied,
        &has_code,
        &reach,
        &objects,
        source.is_some(),
    ));
    not_analysable.sort_by(|a, b| (&a.at, &a.why).cmp(&(&b.at, &b.why)));
    not_analysable.dedup_by(|a, b| a.at == b.at && a.why == b.why);
    for expansion in &mut reach.expansions {
        let functions: BTreeSet<&String> = expansion
            .uses
            .iter()
            .filter_map(|at| tied.get(&(at.path.clone(), at.line)))
            .flatten()
            .collect();
        expansion.functions = functions.into_iter().cloned().collect();
    }
    // Pitfalls name lines of the basis the report is in.
    let checked = match basis {
        LineBasis::TargetSource => &analysed,
        LineBasis::AsWritten => patch,
    };
    let mut found = pitfalls::check(checked);
    // A changed signature matters beyond the patch when other modules call the function:
    // the symbol tables say which functions are exported.
    for change in pitfalls::signature_changes(checked) {
        let exported_in: Vec<&str> = index
            .objects
            .iter()
            .filter(|o| {
                o.symbols
                    .functions
                    .iter()
                    .any(|f| f.exported && f.name == change.function)
            })
            .map(|o| o.name.as_str())
            .collect();
        if !exported_in.is_empty() {
            found.push(Pitfall {
                kind: PitfallKind::ExportedSignature,
                path: change.path,
                line: change.line,
                detail: format!(
                    "the signature of {}() changes, and {} exports it: modules built against the old signature keep calling it that way",
                    change.function,
                    exported_in.join(", ")
                ),
            });
        }
    }
    found.sort_by(|a, b| (&a.path, a.line, a.kind).cmp(&(&b.path, b.line, b.kind)));
    for pitfall in found.iter_mut().filter(|p| p.kind == PitfallKind::Header) {
        // Replacements whose first reason is a change in this header.
        let from_header = replace
            .iter()
            .filter(|r| {
                r.reasons
                    .first()
                    .is_some_and(|first| first.contains(&format!("{}:", pitfall.path)))
            })
            .count();
        pitfall.detail = format!(
            "a header changes: {from_header} function(s) to replace in {} hold its code",
            summary(&objects)
        );
    }
    Ok(ImpactReport {
        version: REPORT_VERSION,
        objects,
        changed_lines: changed,
        files_without_code,
        changed_functions,
        replace,
        unpatchable,
        pitfalls: found,
        incomplete,
        basis,
        hunks,
        expansions: reach.expansions,
        data_changes: reach.data_changes,
        not_analysable,
        not_compiled: reach.not_compiled,
    })
}

/// The fix's changed lines no object ties to a function and nothing else explains:
/// without the source, every such line that is not blank or a comment (in a file with
/// code, or a header); with it, a line inside a function of the source that has no
/// code in this build. (The source explains the rest: macros, types, data, directives.)
fn unexplained_lines(
    changed: &[ChangedLines],
    analysed: &Patch,
    tied: &BTreeMap<(String, u32), BTreeSet<String>>,
    has_code: &BTreeSet<&str>,
    reach: &expand::Reach,
    objects: &[String],
    with_source: bool,
) -> Vec<NotAnalysable> {
    // The text of each old-side line, as the fix shows it.
    let mut texts: HashMap<(&str, u32), &str> = HashMap::new();
    for file in &analysed.files {
        let Some(path) = &file.old_path else { continue };
        for line in file.hunks.iter().flat_map(|h| &h.lines) {
            if let Some(old) = line.old_line {
                texts.insert((path.as_str(), old), line.text.as_str());
            }
        }
    }
    let mut found = Vec::new();
    for file in changed {
        let known = has_code.contains(file.path.as_str());
        for &line in &file.lines {
            if tied
                .get(&(file.path.clone(), line))
                .is_some_and(|names| !names.is_empty())
            {
                continue;
            }
            let text = texts
                .get(&(file.path.as_str(), line))
                .copied()
                .unwrap_or_default();
            let at = SourceLine {
                path: file.path.clone(),
                line,
            };
            let why = if with_source {
                match reach.in_function.get(&(file.path.clone(), line)) {
                    Some(function) => format!(
                        "in {function}() of the source, which has no code in {}: not built in this configuration, or in a module not indexed",
                        summary(objects)
                    ),
                    None => continue,
                }
            } else if is_blank_or_comment(text) || (!known && file.path.ends_with(".c")) {
                // A `.c` file without code is not built here: `files_without_code`.
                continue;
            } else if known {
                "no function of this build holds this line (a macro, a type, data, or code not built here): not analysable without the source".to_owned()
            } else {
                format!(
                    "{} has no code in this build: if this line is a macro, a type or a constant, what uses it cannot be found without the source",
                    file.path
                )
            };
            found.push(NotAnalysable {
                at,
                text: text.to_owned(),
                why,
            });
        }
    }
    found
}

/// One file's code in one object: where the line table puts each line, the functions
/// defined in the file, and how far down the file each one's code reaches.
pub(crate) struct FileCode {
    places: Vec<(u32, Place)>,
    /// Functions defined in the file, by declaration line.
    pub(crate) declared: Vec<(u32, u32)>,
    /// Per function: the last line of this file the line table gives its code.
    last_line: HashMap<u32, u32>,
}

/// How a line was tied to a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tie {
    /// The line table puts code of the line in it (or in an inlined copy of it).
    Code,
    /// It is the function declared last before the line, and its code reaches past it.
    Body,
}

impl FileCode {
    /// The code of `path` in `object`; `None` when the object has none.
    pub(crate) fn of(object: &ObjectIndex, path: &str) -> Result<Option<FileCode>, IndexError> {
        let files = object.files_matching(path);
        let mut declared: Vec<(u32, u32)> = (0..)
            .zip(&object.functions)
            .filter(|(_, f)| {
                f.defined && f.decl_line > 0 && f.decl_file.is_some_and(|d| files.contains(&d))
            })
            .map(|(i, f)| (f.decl_line, i))
            .collect();
        declared.sort_unstable();
        if files.is_empty() && declared.is_empty() {
            return Ok(None);
        }
        let places = object.places_in_file(path)?;
        let mut last_line: HashMap<u32, u32> = HashMap::new();
        for &(line, place) in &places {
            let last = last_line.entry(object.owner(place)).or_insert(line);
            *last = (*last).max(line);
        }
        Ok(Some(FileCode {
            places,
            declared,
            last_line,
        }))
    }

    /// Whether the line table has code of `line`.
    pub(crate) fn has_code_at(&self, line: u32) -> bool {
        let from = self.places.partition_point(|&(l, _)| l < line);
        self.places.get(from).is_some_and(|&(l, _)| l == line)
    }

    /// The functions holding `line`: those the line table puts its code in, and the
    /// function declared last before it (the line table misses code the compiler folded
    /// into a caller's instruction), unless the line is past the last line of that
    /// function's code: then it is after the function's end, between functions.
    pub(crate) fn functions_at(&self, object: &ObjectIndex, line: u32) -> Vec<(u32, Tie)> {
        let mut found: Vec<(u32, Tie)> = Vec::new();
        let from = self.places.partition_point(|&(l, _)| l < line);
        for &(_, place) in self.places[from..].iter().take_while(|&&(l, _)| l == line) {
            let f = object.owner(place);
            if !found.iter().any(|&(g, _)| g == f) {
                found.push((f, Tie::Code));
            }
        }
        let before = self.declared.partition_point(|&(d, _)| d <= line);
        if let Some(&(decl_line, _)) = before.checked_sub(1).map(|i| &self.declared[i]) {
            // Every function declared on that line (a macro can declare several).
            for &(_, f) in self.declared[..before]
                .iter()
                .rev()
                .take_while(|&&(d, _)| d == decl_line)
            {
                let reaches = self.last_line.get(&f).is_none_or(|&last| line <= last);
                if reaches && !found.iter().any(|&(g, _)| g == f) {
                    found.push((f, Tie::Body));
                }
            }
        }
        found
    }
}

/// The lines of `not_compiled` (path, line) where some object's line table has code.
fn contradicted_by_the_build(
    not_compiled: &[(String, u32)],
    index: &KernelIndex,
) -> Result<BTreeSet<(String, u32)>, IndexError> {
    let mut by_path: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (path, line) in not_compiled {
        by_path.entry(path).or_default().push(*line);
    }
    let mut contradicted = BTreeSet::new();
    for (path, lines) in by_path {
        for object in &index.objects {
            let Some(code) = FileCode::of(object, path)? else {
                continue;
            };
            for &line in &lines {
                if code.has_code_at(line) {
                    contradicted.insert((path.to_owned(), line));
                }
            }
        }
    }
    Ok(contradicted)
}

/// What the analysis learnt of one object from the changed lines.
struct ObjectFindings {
    /// Changed functions, with the evidence.
    functions: BTreeMap<u32, String>,
    /// The functions each (path, line) fell in.
    by_line: BTreeMap<(String, u32), Vec<u32>>,
}

/// The functions of `object` whose source the changed lines are, with the evidence.
/// Files with code in the object are added to `has_code`; `None` when it has none.
/// `via` says, for a line the fix does not change itself, why it is analysed.
fn changed_functions_in<'c>(
    object: &ObjectIndex,
    changed: &'c [ChangedLines],
    via: &BTreeMap<(String, u32), String>,
    has_code: &mut BTreeSet<&'c str>,
) -> Result<Option<ObjectFindings>, IndexError> {
    let mut findings = ObjectFindings {
        functions: BTreeMap::new(),
        by_line: BTreeMap::new(),
    };
    let mut known = false;
    for file in changed {
        let Some(code) = FileCode::of(object, &file.path)? else {
            continue;
        };
        known = true;
        has_code.insert(&file.path);
        for &line in &file.lines {
            let why = via.get(&(file.path.clone(), line));
            let ties = code.functions_at(object, line);
            for &(f, tie) in &ties {
                findings.functions.entry(f).or_insert_with(|| {
                    let mut evidence = match tie {
                        Tie::Code => format!("code of {}:{line}", file.path),
                        Tie::Body => format!("its body holds {}:{line}", file.path),
                    };
                    if let Some(why) = why {
                        evidence.push_str(&format!(", {why}"));
                    }
                    evidence
                });
            }
            findings.by_line.insert(
                (file.path.clone(), line),
                ties.into_iter().map(|(f, _)| f).collect(),
            );
        }
    }
    Ok(known.then_some(findings))
}

/// The start of [`Step::Blocked::why`] for a clone whose calling convention changed.
const CLONE_ABI_CHANGED: &str = "clone with a changed calling convention";

/// The walk from changed functions to replaceable ones, in one object.
struct Walk<'a> {
    object: &'a ObjectIndex,
    by_address: SymbolsByAddress<'a>,
    queue: VecDeque<(u32, Vec<Step>)>,
    seen: HashSet<u32>,
    replace: BTreeMap<(String, u32), Replacement>,
    unpatchable: BTreeMap<String, Unpatchable>,
}

impl<'a> Walk<'a> {
    fn new(object: &'a ObjectIndex) -> Walk<'a> {
        Walk {
            object,
            by_address: object.symbols_by_address(),
            queue: VecDeque::new(),
            seen: HashSet::new(),
            replace: BTreeMap::new(),
            unpatchable: BTreeMap::new(),
        }
    }

    fn instance_name(&self, instance: u32) -> &'a str {
        let object = self.object;
        object.function_name(object.instances[instance as usize].function)
    }

    /// Queues the out-of-line instances of function `f` and every instance it was
    /// inlined into.
    fn function(&mut self, f: u32, reasons: Vec<Step>) {
        for instance in self.object.instances_of(f) {
            self.queue.push_back((instance as u32, reasons.clone()));
        }
        self.inlined_into(f, reasons);
    }

    /// Queues every instance function `f` was inlined into.
    fn inlined_into(&mut self, f: u32, reasons: Vec<Step>) {
        let object = self.object;
        let name = object.function_name(f);
        for site in object.inline_sites_of(f) {
            let file = object.file_name(site.call_file);
            let file = file.rsplit('/').next().unwrap_or(file);
            // The inlined copies this one sits in, innermost first (bounded: a parent
            // comes before its children in the index, but a damaged index must not loop).
            let mut through = Vec::new();
            let mut parent = site.parent;
            while let Some(p) = parent.filter(|_| through.len() < object.inline_sites.len()) {
                let Some(outer) = object.inline_sites.get(p as usize) else {
                    break;
                };
                through.push(object.function_name(outer.function).to_owned());
                parent = outer.parent;
            }
            let mut reasons = reasons.clone();
            reasons.push(Step::Inlined {
                function: name.to_owned(),
                into: self.instance_name(site.container).to_owned(),
                file: if file.is_empty() { "?" } else { file }.to_owned(),
                line: site.call_line,
                through,
            });
            self.queue.push_back((site.container, reasons));
        }
    }

    fn run(&mut self) {
        while let Some((instance, reasons)) = self.queue.pop_front() {
            if !self.seen.insert(instance) {
                continue;
            }
            self.instance(instance, reasons);
        }
    }

    /// An out-of-line instance: replace it, or go to its callers.
    fn instance(&mut self, id: u32, reasons: Vec<Step>) {
        let object = self.object;
        let instance = &object.instances[id as usize];
        let symbol = self.by_address.of_instance(instance);
        let name = self.instance_name(id);
        let Some(symbol) = symbol else {
            self.blocked(name, "no symbol at its entry address", reasons, id);
            return;
        };
        let why_not = if symbol.section.starts_with(".init") {
            Some("init code: it ran at boot and is gone".to_owned())
        } else if !symbol.ftrace_entry {
            Some("no ftrace entry (notrace or noinstr)".to_owned())
        } else if symbol.is_clone() {
            instance
                .abi_change
                .as_ref()
                .map(|change| format!("{CLONE_ABI_CHANGED}: {change}"))
        } else {
            None
        };
        match why_not {
            None => {
                let mut reasons = reasons;
                let cold: Vec<&str> = instance
                    .ranges
                    .iter()
                    .skip(1)
                    .flat_map(|r| self.by_address.at(r.0))
                    .filter(|f| f.is_cold_part())
                    .map(|f| f.name.as_str())
                    .collect();
                if !cold.is_empty() {
                    reasons.push(Step::ColdParts {
                        parts: cold.into_iter().map(str::to_owned).collect(),
                        of: symbol.name.clone(),
                    });
                }
                reasons.push(Step::Entry {
                    symbol: symbol.name.clone(),
                });
                let key = (symbol.name.clone(), symbol.old_sympos);
                let file = object
                    .file_name(object.functions[instance.function as usize].decl_file)
                    .to_owned();
                self.replace
                    .entry(key)
                    .and_modify(|r| {
                        if r.path.len() > reasons.len() {
                            r.reasons = reasons_of(&reasons);
                            r.path = reasons.clone();
                        }
                    })
                    .or_insert_with(|| Replacement {
                        symbol: symbol.name.clone(),
                        object: object.name.clone(),
                        old_sympos: symbol.old_sympos,
                        traceable: true,
                        reasons: reasons_of(&reasons),
                        path: reasons,
                        file,
                    });
            }
            Some(why) if why.starts_with("init code") => {
                self.unpatchable.insert(
                    symbol.name.clone(),
                    Unpatchable {
                        symbol: symbol.name.clone(),
                        object: object.name.clone(),
                        why: why.clone(),
                        resolution: "nothing to replace: the fix matters only for the next boot"
                            .into(),
                        path: {
                            let mut path = reasons;
                            path.push(Step::Blocked {
                                symbol: symbol.name.clone(),
                                why: why.clone(),
                                abi_change: None,
                            });
                            path
                        },
                    },
                );
            }
            Some(why) => self.blocked(&symbol.name, &why, reasons, id),
        }
    }

    /// Instance `id` cannot be replaced: replace its callers, and the functions its
    /// function was inlined into.
    fn blocked(&mut self, symbol: &str, why: &str, reasons: Vec<Step>, id: u32) {
        let object = self.object;
        let function = object.instances[id as usize].function;
        let callers: Vec<(u32, bool)> = object
            .calls_to(Callee::Instance(id))
            .iter()
            .chain(object.calls_to(Callee::Function(function)))
            .map(|c| (c.caller, c.tail_call))
            .collect();
        let inlined = object.inline_sites_of(function).next().is_some();
        let mut reasons = reasons;
        reasons.push(Step::Blocked {
            symbol: symbol.to_owned(),
            why: why.to_owned(),
            abi_change: why
                .strip_prefix(CLONE_ABI_CHANGED)
                .and_then(|rest| rest.strip_prefix(": "))
                .map(str::to_owned),
        });
        let resolution = if callers.is_empty() && !inlined {
            "no caller in the debug information: the fix cannot be live-patched here".to_owned()
        } else {
            "its callers are replaced instead".to_owned()
        };
        self.unpatchable.insert(
            symbol.to_owned(),
            Unpatchable {
                symbol: symbol.to_owned(),
                object: object.name.clone(),
                why: why.to_owned(),
                resolution,
                path: reasons.clone(),
            },
        );
        for (caller, tail) in callers {
            let mut reasons = reasons.clone();
            reasons.push(Step::Called {
                caller: self.instance_name(caller).to_owned(),
                callee: symbol.to_owned(),
                tail,
            });
            self.queue.push_back((caller, reasons));
        }
        self.inlined_into(function, reasons);
    }
}

/// One hunk's outcome for people.
fn hunk_outcome(outcome: &HunkOutcome) -> String {
    match outcome {
        HunkOutcome::Placed(HunkState::Applied {
            offset,
            fuzz,
            target_line,
        }) => {
            let fuzz = if *fuzz > 0 {
                format!(" with fuzz {fuzz}")
            } else {
                String::new()
            };
            format!("applies at line {target_line}{fuzz} (offset {offset:+})")
        }
        HunkOutcome::Placed(HunkState::AlreadyApplied { at }) => {
            format!("ALREADY APPLIED at line {at}: not analysed")
        }
        HunkOutcome::Placed(HunkState::NotFound) => {
            "DOES NOT APPLY: not found in the target's source; not analysed".to_owned()
        }
        HunkOutcome::Placed(HunkState::FileMissing) => {
            "DOES NOT APPLY: the target's source has no such file; not analysed".to_owned()
        }
        HunkOutcome::Placed(HunkState::NewFile) => "a new file".to_owned(),
        HunkOutcome::Checked(HunkVerdict::Consistent { function }) => {
            format!("in {function}() as its heading says")
        }
        HunkOutcome::Checked(HunkVerdict::Inconsistent { why, .. }) => {
            format!("DOES NOT MATCH THIS BUILD: {why}; not analysed")
        }
        HunkOutcome::Checked(HunkVerdict::Unknown { why }) => {
            format!("not checked ({why}); analysed as written")
        }
    }
}

impl std::fmt::Display for ImpactReport {
    /// The report for people: what changed, what to replace and why, what cannot be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Impact on {}", summary(&self.objects))?;
        writeln!(f, "  line numbers: {}", self.basis)?;
        for file in &self.changed_lines {
            let lines: Vec<String> = file.lines.iter().map(u32::to_string).collect();
            writeln!(f, "  changed {}: lines {}", file.path, lines.join(", "))?;
        }
        for path in &self.files_without_code {
            writeln!(f, "  {path}: no code in {}", summary(&self.objects))?;
        }
        if !self.hunks.is_empty() {
            writeln!(f)?;
            writeln!(f, "Hunks ({}):", self.hunks.len())?;
            for hunk in &self.hunks {
                writeln!(
                    f,
                    "  {} hunk {} (fix line {}): {}",
                    hunk.path,
                    hunk.hunk,
                    hunk.fix_line,
                    hunk_outcome(&hunk.outcome)
                )?;
            }
            if self.hunks.iter().all(|h| !h.analysed) {
                writeln!(
                    f,
                    "NOT ANALYSED: no hunk of the fix applies to this build; what follows is empty for that reason"
                )?;
            }
        }
        if !self.expansions.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "Macros and enumerators the fix changes ({}):",
                self.expansions.len()
            )?;
            for expansion in &self.expansions {
                let kind = match expansion.kind {
                    Followed::Macro => "macro",
                    Followed::Enumerator => "enumerator",
                };
                let through = if expansion.through.is_empty() {
                    String::new()
                } else {
                    format!(", through {}", expansion.through.join(", "))
                };
                let functions = if expansion.functions.is_empty() {
                    "no function of this build".to_owned()
                } else {
                    format!("{}()", expansion.functions.join("(), "))
                };
                writeln!(
                    f,
                    "  {kind} {} (changed at {}:{}){through}: {} line(s) use it, in {functions} (searched {})",
                    expansion.name,
                    expansion.changed.path,
                    expansion.changed.line,
                    expansion.uses.len(),
                    expansion.searched
                )?;
                if expansion.uncompiled_uses > 0 {
                    writeln!(
                        f,
                        "    {} use(s) in code this build does not compile were left out",
                        expansion.uncompiled_uses
                    )?;
                }
            }
        }
        if !self.data_changes.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "Data and type changes ({}): a live patch does not change what is already in memory",
                self.data_changes.len()
            )?;
            for change in &self.data_changes {
                let users = if change.users.is_empty() {
                    String::new()
                } else if change.more_users > 0 {
                    format!(
                        "; used by {}() and {} more",
                        change.users.join("(), "),
                        change.more_users
                    )
                } else {
                    format!("; used by {}()", change.users.join("(), "))
                };
                writeln!(
                    f,
                    "  {}:{}: {}{users}",
                    change.at.path, change.at.line, change.detail
                )?;
            }
        }
        if !self.not_analysable.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "NOT ANALYSABLE ({}): what these lines change is unknown",
                self.not_analysable.len()
            )?;
            for item in &self.not_analysable {
                let text = if item.text.trim().is_empty() {
                    String::new()
                } else {
                    format!(" `{}`", item.text.trim())
                };
                writeln!(f, "  {}:{}{text}: {}", item.at.path, item.at.line, item.why)?;
            }
        }
        if !self.not_compiled.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "NOT COMPILED in this build ({}): what these lines change is not in this kernel",
                self.not_compiled.len()
            )?;
            for item in &self.not_compiled {
                let text = if item.text.trim().is_empty() {
                    String::new()
                } else {
                    format!(" `{}`", item.text.trim())
                };
                writeln!(
                    f,
                    "  {}:{}{text}: not compiled in this build: {}",
                    item.at.path, item.at.line, item.why
                )?;
            }
        }
        writeln!(f)?;
        writeln!(f, "Changed functions ({}):", self.changed_functions.len())?;
        for function in &self.changed_functions {
            writeln!(
                f,
                "  {}()  {}:{}  ({})",
                function.name, function.decl_file, function.decl_line, function.evidence
            )?;
        }
        writeln!(f)?;
        writeln!(f, "Functions to replace ({}):", self.replace.len())?;
        for replacement in &self.replace {
            let sympos = if replacement.old_sympos > 0 {
                format!(", old_sympos {}", replacement.old_sympos)
            } else {
                String::new()
            };
            writeln!(f, "  {}:{}{sympos}", replacement.object, replacement.symbol)?;
            for reason in &replacement.reasons {
                writeln!(f, "      - {reason}")?;
            }
        }
        if !self.unpatchable.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "Cannot be replaced themselves ({}):",
                self.unpatchable.len()
            )?;
            for item in &self.unpatchable {
                writeln!(f, "  {}: {}; {}", item.symbol, item.why, item.resolution)?;
            }
        }
        if !self.incomplete.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "INCOMPLETE: {} compilation unit(s) could not be read and may hold code of this fix:",
                self.incomplete.len()
            )?;
            for unit in &self.incomplete {
                writeln!(
                    f,
                    "  {} unit at .debug_info+{:#x}{}: {} ({})",
                    unit.object,
                    unit.unit_offset,
                    unit.unit_name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default(),
                    unit.why,
                    unit.error
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(diff: &str) -> Vec<(String, Vec<u32>)> {
        changed_lines(&crate::patch::parse(diff.as_bytes()).unwrap())
            .into_iter()
            .map(|c| (c.path, c.lines))
            .collect()
    }

    #[test]
    fn removed_lines_are_changed_lines() {
        let diff = "--- a/k.c\n+++ b/k.c\n@@ -10,4 +10,3 @@\n a\n-b\n-c\n+C\n d\n";
        assert_eq!(lines(diff), [("k.c".to_owned(), vec![11, 12])]);
    }

    #[test]
    fn a_pure_insertion_changes_the_lines_around_it() {
        let diff = "--- a/k.c\n+++ b/k.c\n@@ -10,2 +10,4 @@\n a\n+x\n+y\n b\n";
        assert_eq!(lines(diff), [("k.c".to_owned(), vec![10, 11])]);
    }

    #[test]
    fn a_blank_or_comment_neighbour_of_an_insertion_is_no_evidence() {
        // Before a function's header: the comment above it is not the function.
        let diff = "--- a/k.c\n+++ b/k.c\n@@ -10,3 +10,4 @@\n  *\n  */\n+#include <x.h>\n pid_t kernel_clone(void)\n";
        assert_eq!(lines(diff), [("k.c".to_owned(), vec![12])]);
        // Between a blank line and a comment: the nearest code above.
        let diff =
            "--- a/k.c\n+++ b/k.c\n@@ -10,4 +10,5 @@\n \treturn x;\n \n+\ty();\n \t/*\n \t * z\n";
        assert_eq!(lines(diff), [("k.c".to_owned(), vec![10])]);
        // Nothing but blank lines and comments: the two neighbours.
        let diff = "--- a/k.c\n+++ b/k.c\n@@ -10,2 +10,3 @@\n \n+\ty();\n \t/*\n";
        assert_eq!(lines(diff), [("k.c".to_owned(), vec![10, 11])]);
        assert!(is_blank_or_comment("\t * text"));
        assert!(!is_blank_or_comment("\t*newpid = ctr++;"));
        assert!(!is_blank_or_comment("/* x */ y();"));
    }

    #[test]
    fn new_files_have_no_old_lines() {
        let diff = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+a\n+b\n";
        assert!(lines(diff).is_empty());
    }
}
