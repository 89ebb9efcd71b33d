//! From a fix and one object's tables to the functions a live patch must replace.
//!
//! Pure functions over [`Patch`], [`FunctionTable`] and [`DwarfIndex`]; nothing here reads
//! files. The steps:
//!
//! 1. The old-side lines each hunk changes ([`changed_lines`]); a pure insertion changes
//!    the lines around its insertion point.
//! 2. The functions those lines belong to: where the line table puts their code (directly
//!    or as an inlined copy), and the function whose declaration holds the line (the line
//!    table misses code the compiler folded into a caller's instruction).
//! 3. What must be replaced: each changed function's out-of-line instances and clones,
//!    and every function it was inlined into.
//! 4. Anything that cannot be replaced itself (no ftrace entry, a `.cold` part, init
//!    code, a clone whose calling convention changed) is replaced through its callers,
//!    recursively, with the reason kept at each step.

use crate::dwarf::{clone_abi_change, path_matches, DieOffset, DwarfIndex, Subprogram};
use crate::patch::{LineKind, Patch};
use crate::pitfalls::{self, Pitfall, PitfallKind};
use crate::symbols::{FunctionSymbol, FunctionTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

/// The version of [`ImpactReport`]'s JSON form; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 1;

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
    /// Declaring file, as the debug information names it.
    pub decl_file: String,
    /// Declaring line.
    pub decl_line: u32,
    /// How the change was tied to it.
    pub evidence: String,
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
    /// Why, in order: from the changed line to this function.
    pub reasons: Vec<String>,
}

/// A function that holds changed code but cannot be replaced, and how that was handled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpatchable {
    /// The symbol (or the function name when it has no symbol of its own).
    pub symbol: String,
    /// Why it cannot be replaced.
    pub why: String,
    /// What was done instead.
    pub resolution: String,
}

/// The analysis of one fix against one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The object analysed.
    pub object: String,
    /// Old-side lines changed, per file.
    pub changed_lines: Vec<ChangedLines>,
    /// Files of the fix that contribute no code to this object.
    pub files_without_code: Vec<String>,
    /// Functions whose source changed.
    pub changed_functions: Vec<ChangedFunction>,
    /// What the module must replace.
    pub replace: Vec<Replacement>,
    /// Functions that cannot be replaced themselves.
    pub unpatchable: Vec<Unpatchable>,
    /// What in the fix needs a reviewer's care (kpatch patch author guide).
    pub pitfalls: Vec<Pitfall>,
}

/// The old-side lines each file's hunks change. New files have no old side and are left
/// out; for a pure insertion, the old lines just before and after the insertion point
/// count as changed (code is added between them).
pub fn changed_lines(patch: &Patch) -> Vec<ChangedLines> {
    let mut per_file: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for file in &patch.files {
        let Some(path) = &file.old_path else { continue };
        let lines = per_file.entry(path.clone()).or_default();
        for hunk in &file.hunks {
            // The old line before the current block of changes, whether that block removed
            // anything, and whether it added lines that still need their closing neighbour.
            let mut last_old = None;
            let mut block_removed = false;
            let mut pending_insertion = false;
            for line in &hunk.lines {
                match line.kind {
                    LineKind::Removed => {
                        lines.extend(line.old_line);
                        block_removed = true;
                    }
                    LineKind::Added if !block_removed => {
                        if !pending_insertion {
                            lines.extend(last_old);
                        }
                        pending_insertion = true;
                    }
                    LineKind::Added => {}
                    LineKind::Context => {
                        if pending_insertion {
                            lines.extend(line.old_line);
                        }
                        pending_insertion = false;
                        block_removed = false;
                        last_old = line.old_line;
                    }
                }
            }
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

/// A changed function as the tables know it: its name and declaration, and every DIE
/// that stands for it (one abstract instance per compilation unit that inlined it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FunctionKey {
    name: String,
    decl_file: String,
    decl_line: u32,
}

impl FunctionKey {
    /// The key of a named subprogram.
    fn of(s: &Subprogram) -> Option<FunctionKey> {
        Some(FunctionKey {
            name: s.name.clone()?,
            decl_file: s.decl_file.clone().unwrap_or_default(),
            decl_line: s.decl_line,
        })
    }
}

/// Analyses a fix against one object.
pub fn analyze(patch: &Patch, symbols: &FunctionTable, dwarf: &DwarfIndex) -> ImpactReport {
    let changed = changed_lines(patch);
    let mut files_without_code = Vec::new();
    let mut functions: BTreeMap<FunctionKey, (BTreeSet<DieOffset>, String)> = BTreeMap::new();
    let key_of = FunctionKey::of;
    // Every DIE per function key, so all abstract instances of a header inline are found.
    let mut dies_by_key: HashMap<FunctionKey, Vec<DieOffset>> = HashMap::new();
    for s in &dwarf.subprograms {
        if let Some(key) = key_of(s) {
            dies_by_key.entry(key).or_default().push(s.die);
        }
    }
    for file in &changed {
        let known = dwarf.files.iter().any(|f| path_matches(f, &file.path))
            || dwarf.subprograms.iter().any(|s| {
                s.decl_file
                    .as_deref()
                    .is_some_and(|f| path_matches(f, &file.path))
            });
        if !known {
            files_without_code.push(file.path.clone());
            continue;
        }
        let declared_here = declarations_in(dwarf, &file.path);
        for &line in &file.lines {
            for place in dwarf.code_for_line(&file.path, line) {
                let owner = place
                    .inline_chain
                    .last()
                    .copied()
                    .unwrap_or(place.container);
                if let Some(key) = dwarf.subprogram(owner).and_then(key_of) {
                    functions.entry(key).or_insert_with(|| {
                        (BTreeSet::new(), format!("code of {}:{line}", file.path))
                    });
                }
            }
            // The function declared last before the line holds it.
            if let Some(key) = declared_here
                .iter()
                .filter(|(decl_line, _)| *decl_line <= line)
                .max_by_key(|(decl_line, _)| *decl_line)
                .map(|(_, key)| key.clone())
            {
                functions.entry(key).or_insert_with(|| {
                    (
                        BTreeSet::new(),
                        format!("its body holds {}:{line}", file.path),
                    )
                });
            }
        }
    }
    for (key, (dies, _)) in functions.iter_mut() {
        dies.extend(dies_by_key.get(key).into_iter().flatten());
    }

    let mut walk = Walk::new(symbols, dwarf);
    let mut changed_functions = Vec::new();
    for (key, (dies, evidence)) in &functions {
        changed_functions.push(ChangedFunction {
            name: key.name.clone(),
            decl_file: key.decl_file.clone(),
            decl_line: key.decl_line,
            evidence: evidence.clone(),
        });
        let start = format!("{}() changed ({evidence})", key.name);
        for &die in dies {
            walk.function(die, vec![start.clone()]);
        }
    }
    walk.run();
    let replace: Vec<Replacement> = walk.replace.into_values().collect();
    let mut found = pitfalls::check(patch);
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
            symbols.object
        );
    }
    ImpactReport {
        version: REPORT_VERSION,
        object: symbols.object.clone(),
        changed_lines: changed,
        files_without_code,
        changed_functions,
        replace,
        unpatchable: walk.unpatchable.into_values().collect(),
        pitfalls: found,
    }
}

/// Functions declared in `path`, by declaration line (definitions only).
fn declarations_in(dwarf: &DwarfIndex, path: &str) -> Vec<(u32, FunctionKey)> {
    let mut found: Vec<(u32, FunctionKey)> = dwarf
        .subprograms
        .iter()
        .filter(|s| {
            s.decl_line > 0
                && s.decl_file
                    .as_deref()
                    .is_some_and(|f| path_matches(f, path))
        })
        .filter(|s| s.is_abstract || !s.ranges.is_empty())
        .filter_map(|s| Some((s.decl_line, FunctionKey::of(s)?)))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The walk from changed functions to replaceable ones.
struct Walk<'a> {
    symbols: &'a FunctionTable,
    dwarf: &'a DwarfIndex,
    by_address: HashMap<u64, Vec<&'a FunctionSymbol>>,
    queue: VecDeque<(DieOffset, Vec<String>)>,
    seen: HashSet<DieOffset>,
    replace: BTreeMap<(String, u32), Replacement>,
    unpatchable: BTreeMap<String, Unpatchable>,
}

impl<'a> Walk<'a> {
    fn new(symbols: &'a FunctionTable, dwarf: &'a DwarfIndex) -> Walk<'a> {
        let mut by_address: HashMap<u64, Vec<&FunctionSymbol>> = HashMap::new();
        for f in &symbols.functions {
            by_address.entry(f.address).or_default().push(f);
        }
        Walk {
            symbols,
            dwarf,
            by_address,
            queue: VecDeque::new(),
            seen: HashSet::new(),
            replace: BTreeMap::new(),
            unpatchable: BTreeMap::new(),
        }
    }

    fn name(&self, die: DieOffset) -> String {
        self.dwarf.name_of(die).unwrap_or("?").to_owned()
    }

    /// Queues the out-of-line instances of the function at `die` (abstract or concrete)
    /// and every function it was inlined into.
    fn function(&mut self, die: DieOffset, reasons: Vec<String>) {
        let name = self.name(die);
        let instances: Vec<DieOffset> = self
            .dwarf
            .subprograms
            .iter()
            .filter(|s| !s.ranges.is_empty() && (s.die == die || s.abstract_origin == Some(die)))
            .map(|s| s.die)
            .collect();
        for instance in instances {
            self.queue.push_back((instance, reasons.clone()));
        }
        let sites: Vec<(DieOffset, String)> = self
            .dwarf
            .inline_sites
            .iter()
            .filter(|site| site.origin == die)
            .map(|site| {
                let file = site.call_file.as_deref().unwrap_or("?");
                let file = file.rsplit('/').next().unwrap_or(file);
                (
                    site.container,
                    format!(
                        "{name}() is inlined into {}() at {file}:{}",
                        self.name(site.container),
                        site.call_line
                    ),
                )
            })
            .collect();
        for (container, why) in sites {
            let mut reasons = reasons.clone();
            reasons.push(why);
            self.queue.push_back((container, reasons));
        }
    }

    fn run(&mut self) {
        while let Some((die, reasons)) = self.queue.pop_front() {
            if !self.seen.insert(die) {
                continue;
            }
            self.instance(die, reasons);
        }
    }

    /// An out-of-line instance with code: replace it, or go to its callers.
    fn instance(&mut self, die: DieOffset, reasons: Vec<String>) {
        let Some(subprogram) = self.dwarf.subprogram(die) else {
            return;
        };
        let entry = subprogram.ranges.first().map(|r| r.0);
        let symbol = entry
            .and_then(|a| self.by_address.get(&a))
            .and_then(|candidates| candidates.iter().find(|f| !f.is_cold_part()).copied());
        let name = self.name(die);
        let Some(symbol) = symbol else {
            self.blocked(&name, "no symbol at its entry address", reasons, die);
            return;
        };
        let why_not = if symbol.section.starts_with(".init") {
            Some("init code: it ran at boot and is gone".to_owned())
        } else if !symbol.ftrace_entry {
            Some("no ftrace entry (notrace or noinstr)".to_owned())
        } else if symbol.is_clone() {
            subprogram
                .abstract_origin
                .and_then(|o| self.dwarf.subprogram(o))
                .and_then(|origin| clone_abi_change(subprogram, origin))
                .map(|change| format!("clone with a changed calling convention: {change}"))
        } else {
            None
        };
        match why_not {
            None => {
                let mut reasons = reasons;
                if subprogram.ranges.len() > 1 {
                    let cold: Vec<&str> = subprogram.ranges[1..]
                        .iter()
                        .filter_map(|r| self.by_address.get(&r.0))
                        .flatten()
                        .filter(|f| f.is_cold_part())
                        .map(|f| f.name.as_str())
                        .collect();
                    if !cold.is_empty() {
                        reasons.push(format!(
                            "{} is part of {}, replaced with it",
                            cold.join(", "),
                            symbol.name
                        ));
                    }
                }
                reasons.push(format!("{} has an ftrace entry", symbol.name));
                let key = (symbol.name.clone(), symbol.old_sympos);
                let object = self.symbols.object.clone();
                self.replace
                    .entry(key)
                    .and_modify(|r| {
                        if r.reasons.len() > reasons.len() {
                            r.reasons = reasons.clone();
                        }
                    })
                    .or_insert_with(|| Replacement {
                        symbol: symbol.name.clone(),
                        object,
                        old_sympos: symbol.old_sympos,
                        traceable: true,
                        reasons,
                    });
            }
            Some(why) if why.starts_with("init code") => {
                self.unpatchable.insert(
                    symbol.name.clone(),
                    Unpatchable {
                        symbol: symbol.name.clone(),
                        why,
                        resolution: "nothing to replace: the fix matters only for the next boot"
                            .into(),
                    },
                );
            }
            Some(why) => {
                let symbol_name = symbol.name.clone();
                self.blocked(&symbol_name, &why, reasons, die);
            }
        }
    }

    /// `die` cannot be replaced: replace its callers and the functions it was inlined into.
    fn blocked(&mut self, symbol: &str, why: &str, reasons: Vec<String>, die: DieOffset) {
        let abstract_origin = self.dwarf.subprogram(die).and_then(|s| s.abstract_origin);
        let callers: Vec<(DieOffset, bool)> = self
            .dwarf
            .call_sites
            .iter()
            .filter(|c| c.callee == die || Some(c.callee) == abstract_origin)
            .map(|c| (c.caller, c.tail_call))
            .collect();
        let mut reasons = reasons;
        reasons.push(format!("{symbol} cannot be replaced: {why}"));
        let resolution = if callers.is_empty() && abstract_origin.is_none() {
            "no caller in the debug information: the fix cannot be live-patched here".to_owned()
        } else {
            "its callers are replaced instead".to_owned()
        };
        self.unpatchable.insert(
            symbol.to_owned(),
            Unpatchable {
                symbol: symbol.to_owned(),
                why: why.to_owned(),
                resolution,
            },
        );
        for (caller, tail) in callers {
            let mut reasons = reasons.clone();
            let how = if tail { "tail-calls" } else { "calls" };
            reasons.push(format!("{}() {how} {symbol}", self.name(caller)));
            self.queue.push_back((caller, reasons));
        }
        if let Some(origin) = abstract_origin {
            self.function(origin, reasons);
        }
    }
}

impl std::fmt::Display for ImpactReport {
    /// The report for people: what changed, what to replace and why, what cannot be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Impact on {}", self.object)?;
        for file in &self.changed_lines {
            let lines: Vec<String> = file.lines.iter().map(u32::to_string).collect();
            writeln!(f, "  changed {}: lines {}", file.path, lines.join(", "))?;
        }
        for path in &self.files_without_code {
            writeln!(f, "  {path}: no code in {}", self.object)?;
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
    fn new_files_have_no_old_lines() {
        let diff = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+a\n+b\n";
        assert!(lines(diff).is_empty());
    }
}
