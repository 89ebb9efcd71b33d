//! From a fix and one object's tables to the functions a live patch must replace.
//!
//! Pure functions over a [`Patch`] and a [`KernelIndex`]; nothing here reads files. The
//! steps, for each object of the index:
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

use crate::dwarf::path_matches;
use crate::index::{Callee, IndexError, KernelIndex, ObjectIndex, SymbolsByAddress};
use crate::patch::{LineKind, Patch};
use crate::pitfalls::{self, Pitfall, PitfallKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// The version of [`ImpactReport`]'s JSON form; bumped on incompatible changes.
pub const REPORT_VERSION: u32 = 2;

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
    /// `vmlinux` or the module name.
    pub object: String,
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

/// Analyses a fix against every object of a kernel build's index.
pub fn analyze(patch: &Patch, index: &KernelIndex) -> Result<ImpactReport, AnalysisError> {
    let changed = changed_lines(patch);
    let mut changed_functions = Vec::new();
    let mut replace = Vec::new();
    let mut unpatchable = Vec::new();
    let mut has_code: BTreeSet<&str> = BTreeSet::new();
    let mut objects = Vec::new();
    for object in &index.objects {
        let Some(functions) = changed_functions_in(object, &changed, &mut has_code)? else {
            continue;
        };
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
            });
            walk.function(f, vec![format!("{}() changed ({evidence})", function.name)]);
        }
        walk.run();
        replace.extend(walk.replace.into_values());
        unpatchable.extend(walk.unpatchable.into_values());
    }
    if changed.is_empty() {
        return Err(AnalysisError::NothingChanged);
    }
    let incomplete: Vec<IncompleteUnit> = index
        .objects
        .iter()
        .flat_map(|object| incomplete_in(object, &changed))
        .collect();
    // Nothing of the fix in any object, and no left-out unit named after one of its
    // files: the fix is for another tree. (A left-out unit of unknown contents, such as
    // a module that could not be read at all, does not make a wrong kernel look right.)
    let a_changed_unit_left_out = incomplete.iter().any(|unit| {
        unit.unit_name
            .as_deref()
            .is_some_and(|name| changed.iter().any(|f| path_matches(name, &f.path)))
    });
    if has_code.is_empty() && !a_changed_unit_left_out {
        return Err(AnalysisError::NoKnownFile {
            paths: changed.iter().map(|f| f.path.clone()).collect(),
            objects: index.objects.iter().map(|o| o.name.clone()).collect(),
        });
    }
    let files_without_code = changed
        .iter()
        .filter(|file| !has_code.contains(file.path.as_str()))
        .map(|file| file.path.clone())
        .collect();
    let mut found = pitfalls::check(patch);
    // A changed signature matters beyond the patch when other modules call the function:
    // the symbol tables say which functions are exported.
    for change in pitfalls::signature_changes(patch) {
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
    })
}

/// The functions of `object` whose source the changed lines are, with the evidence.
/// Files with code in the object are added to `has_code`; `None` when it has none.
fn changed_functions_in<'c>(
    object: &ObjectIndex,
    changed: &'c [ChangedLines],
    has_code: &mut BTreeSet<&'c str>,
) -> Result<Option<BTreeMap<u32, String>>, IndexError> {
    let mut functions: BTreeMap<u32, String> = BTreeMap::new();
    let mut known = false;
    for file in changed {
        let declared_here = declarations_in(object, &file.path);
        if object.files_matching(&file.path).is_empty() && declared_here.is_empty() {
            continue;
        }
        known = true;
        has_code.insert(&file.path);
        let places = object.places_in_file(&file.path)?;
        for &line in &file.lines {
            let from = places.partition_point(|&(l, _)| l < line);
            for &(_, place) in places[from..].iter().take_while(|&&(l, _)| l == line) {
                functions
                    .entry(object.owner(place))
                    .or_insert_with(|| format!("code of {}:{line}", file.path));
            }
            // The function declared last before the line holds it: the line table misses
            // code the compiler folded into a caller's instruction.
            if let Some(&(_, f)) = declared_here
                .iter()
                .filter(|(decl_line, _)| *decl_line <= line)
                .max_by_key(|(decl_line, _)| *decl_line)
            {
                functions
                    .entry(f)
                    .or_insert_with(|| format!("its body holds {}:{line}", file.path));
            }
        }
    }
    Ok(known.then_some(functions))
}

/// Functions defined in `path`, by declaration line.
fn declarations_in(object: &ObjectIndex, path: &str) -> Vec<(u32, u32)> {
    let files = object.files_matching(path);
    let mut found: Vec<(u32, u32)> = (0..)
        .zip(&object.functions)
        .filter(|(_, f)| {
            f.defined && f.decl_line > 0 && f.decl_file.is_some_and(|d| files.contains(&d))
        })
        .map(|(i, f)| (f.decl_line, i))
        .collect();
    found.sort_unstable();
    found
}

/// The walk from changed functions to replaceable ones, in one object.
struct Walk<'a> {
    object: &'a ObjectIndex,
    by_address: SymbolsByAddress<'a>,
    queue: VecDeque<(u32, Vec<String>)>,
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
    fn function(&mut self, f: u32, reasons: Vec<String>) {
        for instance in self.object.instances_of(f) {
            self.queue.push_back((instance as u32, reasons.clone()));
        }
        self.inlined_into(f, reasons);
    }

    /// Queues every instance function `f` was inlined into.
    fn inlined_into(&mut self, f: u32, reasons: Vec<String>) {
        let object = self.object;
        let name = object.function_name(f);
        for site in object.inline_sites_of(f) {
            let file = object.file_name(site.call_file);
            let file = file.rsplit('/').next().unwrap_or(file);
            let mut reasons = reasons.clone();
            reasons.push(format!(
                "{name}() is inlined into {}() at {}:{}",
                self.instance_name(site.container),
                if file.is_empty() { "?" } else { file },
                site.call_line
            ));
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
    fn instance(&mut self, id: u32, reasons: Vec<String>) {
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
                .map(|change| format!("clone with a changed calling convention: {change}"))
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
                    reasons.push(format!(
                        "{} is part of {}, replaced with it",
                        cold.join(", "),
                        symbol.name
                    ));
                }
                reasons.push(format!("{} has an ftrace entry", symbol.name));
                let key = (symbol.name.clone(), symbol.old_sympos);
                self.replace
                    .entry(key)
                    .and_modify(|r| {
                        if r.reasons.len() > reasons.len() {
                            r.reasons = reasons.clone();
                        }
                    })
                    .or_insert_with(|| Replacement {
                        symbol: symbol.name.clone(),
                        object: object.name.clone(),
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
                        object: object.name.clone(),
                        why,
                        resolution: "nothing to replace: the fix matters only for the next boot"
                            .into(),
                    },
                );
            }
            Some(why) => self.blocked(&symbol.name, &why, reasons, id),
        }
    }

    /// Instance `id` cannot be replaced: replace its callers, and the functions its
    /// function was inlined into.
    fn blocked(&mut self, symbol: &str, why: &str, reasons: Vec<String>, id: u32) {
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
        reasons.push(format!("{symbol} cannot be replaced: {why}"));
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
            },
        );
        for (caller, tail) in callers {
            let mut reasons = reasons.clone();
            let how = if tail { "tail-calls" } else { "calls" };
            reasons.push(format!("{}() {how} {symbol}", self.instance_name(caller)));
            self.queue.push_back((caller, reasons));
        }
        self.inlined_into(function, reasons);
    }
}

impl std::fmt::Display for ImpactReport {
    /// The report for people: what changed, what to replace and why, what cannot be.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Impact on {}", summary(&self.objects))?;
        for file in &self.changed_lines {
            let lines: Vec<String> = file.lines.iter().map(u32::to_string).collect();
            writeln!(f, "  changed {}: lines {}", file.path, lines.join(", "))?;
        }
        for path in &self.files_without_code {
            writeln!(f, "  {path}: no code in {}", summary(&self.objects))?;
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
    fn new_files_have_no_old_lines() {
        let diff = "--- /dev/null\n+++ b/new.c\n@@ -0,0 +1,2 @@\n+a\n+b\n";
        assert!(lines(diff).is_empty());
    }
}
