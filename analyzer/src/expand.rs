//! What a fix changes that the line table cannot see: macros, enumerators, types and
//! data, found in the target's source.
//!
//! The line table says which function holds the code of a line; a `#define`'s lines hold
//! no code, so a fix changing a macro body would otherwise change "no function". With the
//! target's source, each changed line is placed ([`crate::source`]'s scan): in a
//! `#define NAME`, every line of the tree using `NAME` is found (the files to read come
//! from the [`SourceIndex`]), following macros whose bodies use it in turn; those lines
//! are analysed as changed, and their functions are found by the line table as usual.
//! An enumerator is followed the same way (an inserted enumerator moves the values of
//! those after it). A changed type, a changed initialiser of global data, or a constant
//! used in either is reported as a data or type change, with the functions that use the
//! names, since a live patch does not change data already in memory.
//!
//! Finding uses by identifier over-approximates (a field or local variable of the same
//! name counts): that is safe; missing a use is not, so whatever cannot be followed is
//! reported as not analysable.
//!
//! With the build's configuration ([`KernelConfig`]), each file's `#if`s are resolved as
//! far as the configuration decides them ([`crate::source::cond`]), and what this build
//! does not compile is left out:
//!
//! - a changed line of the fix that is not compiled is not followed (nor analysed by the
//!   line table), and is reported as [`NotCompiled`] with the conditional that leaves it
//!   out: a macro's other definition, under `#else`, changes nothing in this build;
//! - a `#define`, type or data found while following that is not compiled is not
//!   followed further, and a use in code that is not compiled is left out (counted in
//!   [`Expansion::uncompiled_uses`]);
//! - a `#if` or `#elif` testing a changed macro is not reported as not analysable when it
//!   is not compiled itself, when the configuration decides it whatever the macro's
//!   value, or when it tests the macro only with `defined` and the fix changes the
//!   macro's body without adding or removing a `#define` or `#undef` of it.
//!
//! What the configuration does not decide (an include guard, a test of another macro)
//! is followed as without it: over-approximating is safe.

use crate::impact::ChangedLines;
use crate::patch::{LineKind, Patch};
use crate::source::cond::{only_under_defined, Conditions, LineState};
use crate::source::scan::{self, Context, DirectiveKind, ItemKind, Scan};
use crate::source::{KernelConfig, SourceError, SourceIndex, SourceTree, Truth};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// A name used in more files than this is not followed: every function using it
/// changes, which is no live patch (`READ_ONCE`, `container_of`).
pub const MAX_FILES_PER_NAME: usize = 1_000;
/// At most this many lines are analysed as uses of changed macros and enumerators.
pub const MAX_USE_LINES: usize = 20_000;
/// At most this many functions are named as users of a changed type or data.
pub const MAX_USERS_NAMED: usize = 20;

/// A line of the target's source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SourceLine {
    /// Tree-relative path.
    pub path: String,
    /// Line.
    pub line: u32,
}

/// What was followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Followed {
    /// A `#define`.
    Macro,
    /// An `enum` constant.
    Enumerator,
}

/// A changed macro or enumerator and the code that uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expansion {
    /// Macro or enumerator.
    pub kind: Followed,
    /// Its name.
    pub name: String,
    /// The changed line that is part of it.
    pub changed: SourceLine,
    /// Macros whose bodies use it (or use those), followed in turn.
    pub through: Vec<String>,
    /// The lines of code using it or those macros.
    pub uses: Vec<SourceLine>,
    /// The functions the line table has at those lines (filled by the analysis).
    pub functions: Vec<String>,
    /// Where uses were looked for: `the source index`, or the files read without one.
    pub searched: String,
    /// Lines using it (or the macros it was followed through) that this build does not
    /// compile, by its configuration: left out of `uses`.
    #[serde(default)]
    pub uncompiled_uses: usize,
}

/// What kind of data a change is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// A `struct`, `union` or `enum` definition, or a `typedef`: instances in memory
    /// keep the old layout.
    Type,
    /// An enumerator's value (or those after an inserted one).
    Enumerator,
    /// A global variable's declaration or initialiser: the running kernel's copy keeps
    /// its value.
    Data,
    /// A macro used in a type or in a variable's initialiser.
    Constant,
}

/// A change to data or types, which a live patch does not change in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataChange {
    /// What kind.
    pub kind: DataKind,
    /// Where.
    pub at: SourceLine,
    /// The names involved: the type, the variable, the constant.
    pub names: Vec<String>,
    /// Functions of the source that use them, as far as the source was searched.
    pub users: Vec<String>,
    /// How many more users there are than named.
    pub more_users: usize,
    /// What was seen.
    pub detail: String,
}

/// A changed line the analysis cannot tie to code: its effect is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotAnalysable {
    /// Where.
    pub at: SourceLine,
    /// The line's text, when known.
    pub text: String,
    /// Why it cannot be analysed.
    pub why: String,
}

/// A changed line that this build does not compile, by its configuration: it changes
/// nothing here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCompiled {
    /// Where.
    pub at: SourceLine,
    /// The line's text.
    pub text: String,
    /// The conditional that leaves it out: for a branch after a taken one, the taken
    /// one's.
    pub directive: SourceLine,
    /// That conditional's text.
    pub directive_text: String,
    /// Why, for people: the conditional and the configuration values it tests.
    pub why: String,
}

/// What the changed lines reach beyond the line table.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reach {
    /// Lines to analyse besides the fix's own.
    pub(crate) extra: Vec<ChangedLines>,
    /// For each such line, why it is analysed.
    pub(crate) via: BTreeMap<(String, u32), String>,
    pub(crate) expansions: Vec<Expansion>,
    pub(crate) data_changes: Vec<DataChange>,
    pub(crate) not_analysable: Vec<NotAnalysable>,
    /// The fix's changed lines this build does not compile.
    pub(crate) not_compiled: Vec<NotCompiled>,
    /// Uses of what the fix changes left out as not compiled: (path, line) to the
    /// expansion they serve, checked against the build afterwards.
    pub(crate) left_out: BTreeMap<(String, u32), usize>,
    /// The fix's changed lines the source places inside a function: (path, line) to its
    /// name.
    pub(crate) in_function: BTreeMap<(String, u32), String>,
}

/// What the analysis follows changes through: the target's tree, its identifier index,
/// the build's configuration, and the fix's files and the names whose definitions it
/// adds or removes.
pub(crate) struct Target<'a> {
    pub(crate) tree: &'a dyn SourceTree,
    pub(crate) index: Option<&'a SourceIndex>,
    pub(crate) config: Option<&'a KernelConfig>,
    /// The fix's files, searched when there is no source index.
    pub(crate) paths: &'a [String],
    /// Macros the fix adds or removes a `#define` or `#undef` of ([`definedness_changes`]).
    pub(crate) redefined: &'a HashSet<String>,
    /// Files whose conditionals the fix adds, removes or changes
    /// ([`conditionals_changed`]): which of their lines are compiled is not known from
    /// the target's text, so the configuration is not applied to them.
    pub(crate) restructured: &'a HashSet<String>,
}

/// A file read from the tree: its text, its scan, where its lines start, and with a
/// configuration which of its lines are compiled.
struct Source {
    text: Vec<u8>,
    scanned: Scan,
    /// The byte offset of each line's start (index 0 is line 1).
    line_starts: Vec<usize>,
    conditions: Option<Conditions>,
}

impl Source {
    /// The text of `line`, without its end.
    fn line_text(&self, line: u32) -> String {
        let Some(&start) = (line as usize)
            .checked_sub(1)
            .and_then(|i| self.line_starts.get(i))
        else {
            return String::new();
        };
        let end = self
            .line_starts
            .get(line as usize)
            .copied()
            .unwrap_or(self.text.len());
        String::from_utf8_lossy(&self.text[start..end.max(start)])
            .trim_end()
            .to_owned()
    }

    /// Whether `line` is compiled (always, without a configuration).
    fn state(&self, line: u32) -> LineState<'_> {
        self.conditions
            .as_ref()
            .map_or(LineState::Compiled, |c| c.state(line))
    }
}

/// A file and its scan, shared.
type Scanned = Rc<Source>;

/// The files read so far, scanned: each is read once however many names lead to it.
struct Files<'t> {
    tree: &'t dyn SourceTree,
    config: Option<&'t KernelConfig>,
    restructured: &'t HashSet<String>,
    read: HashMap<String, Option<Scanned>>,
}

impl<'t> Files<'t> {
    fn get(&mut self, path: &str) -> Result<Option<Scanned>, SourceError> {
        if let Some(file) = self.read.get(path) {
            return Ok(file.clone());
        }
        let config = self.config.filter(|_| !self.restructured.contains(path));
        let file = self.tree.read(path)?.map(|text| {
            let scanned = scan::scan(&text);
            let line_starts = scan::line_starts(&text);
            let conditions = config.map(|config| Conditions::new(&text, &scanned, config));
            Rc::new(Source {
                text,
                scanned,
                line_starts,
                conditions,
            })
        });
        self.read.insert(path.to_owned(), file.clone());
        Ok(file)
    }
}

/// The macros whose `#define` or `#undef` lines a fix adds or removes, or moves across a
/// conditional: for them, whether they are defined may change, not only their bodies.
///
/// A block of changed lines (removed and added lines between context lines) that
/// removes one `#define NAME` and adds one, with no conditional directive among its
/// lines, changes the body of `NAME` only; anything else touching a `#define NAME` or
/// an `#undef NAME` may change whether `NAME` is defined.
pub(crate) fn definedness_changes(patch: &Patch) -> HashSet<String> {
    let mut changed = HashSet::new();
    for hunk in patch.files.iter().flat_map(|f| &f.hunks) {
        let mut lines = hunk.lines.iter().peekable();
        while lines.peek().is_some() {
            // Per name: the `#define`s this block removes and adds.
            let mut defines: HashMap<String, (usize, usize)> = HashMap::new();
            let mut conditional = false;
            while let Some(line) = lines.next_if(|l| l.kind != LineKind::Context) {
                let scanned = scan::scan(line.text.as_bytes());
                let Some(d) = scanned.directives.first() else {
                    continue;
                };
                match (d.kind, &d.name) {
                    (DirectiveKind::Define, Some(name)) => {
                        let (removed, added) = defines.entry(name.clone()).or_default();
                        if line.kind == LineKind::Removed {
                            *removed += 1;
                        } else {
                            *added += 1;
                        }
                    }
                    (DirectiveKind::Undef, Some(name)) => {
                        changed.insert(name.clone());
                    }
                    (kind, _) if kind.is_conditional() => conditional = true,
                    _ => {}
                }
            }
            for (name, (removed, added)) in defines {
                if removed != added || conditional {
                    changed.insert(name);
                }
            }
            // The context lines up to the next block.
            while lines.next_if(|l| l.kind == LineKind::Context).is_some() {}
        }
    }
    changed
}

/// The files (old paths) whose conditional structure the fix changes: a block of changed
/// lines that adds or removes a group boundary (`#if`, `#ifdef`, `#ifndef`, `#elif`,
/// `#else`, `#endif` counted by kind on each side). Which lines are compiled then differs
/// from what the target's text says, so the configuration is not applied to the file.
/// A block that only rewrites conditions (`-#if A` `+#if B`) keeps the structure: the
/// changed directive is judged on its own, as before.
pub(crate) fn conditionals_changed(patch: &Patch) -> HashSet<String> {
    /// Opening directives, `#elif`, `#else`, `#endif`: removed (0) and added (1).
    fn kind_of(text: &str) -> Option<usize> {
        let scanned = scan::scan(text.as_bytes());
        match scanned.directives.first()?.kind {
            DirectiveKind::If | DirectiveKind::Ifdef | DirectiveKind::Ifndef => Some(0),
            DirectiveKind::Elif => Some(1),
            DirectiveKind::Else => Some(2),
            DirectiveKind::Endif => Some(3),
            _ => None,
        }
    }
    let mut restructured = HashSet::new();
    for file in &patch.files {
        let Some(path) = &file.old_path else { continue };
        'hunks: for hunk in &file.hunks {
            let mut lines = hunk.lines.iter().peekable();
            while lines.peek().is_some() {
                let mut counts = [[0usize; 4]; 2];
                while let Some(line) = lines.next_if(|l| l.kind != LineKind::Context) {
                    if let Some(kind) = kind_of(&line.text) {
                        counts[usize::from(line.kind == LineKind::Added)][kind] += 1;
                    }
                }
                if counts[0] != counts[1] {
                    restructured.insert(path.clone());
                    break 'hunks;
                }
                while lines.next_if(|l| l.kind == LineKind::Context).is_some() {}
            }
        }
    }
    restructured
}

/// A name queued to follow: what it is, which expansion it serves, the macros between.
struct Pending {
    name: String,
    expansion: usize,
    through: Vec<String>,
}

/// Follows the fix's changed lines (target numbering) through the source: macros and
/// enumerators to their uses, types and data to their users; with a configuration,
/// leaving out what this build does not compile.
pub(crate) fn reach(changed: &[ChangedLines], target: &Target<'_>) -> Result<Reach, SourceError> {
    let index = target.index;
    let mut files = Files {
        tree: target.tree,
        config: target.config,
        restructured: target.restructured,
        read: HashMap::new(),
    };
    let mut out = Reach::default();
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut flagged: HashSet<(String, u32)> = HashSet::new();
    // Types and data already reported, by (path, first line).
    let mut reported: HashSet<(String, u32)> = HashSet::new();
    for file in changed {
        let Some(source) = files.get(&file.path)? else {
            continue;
        };
        let scanned = &source.scanned;
        for &line in &file.lines {
            let at = SourceLine {
                path: file.path.clone(),
                line,
            };
            if let LineState::NotCompiled(decider) = source.state(line) {
                // Nothing this build compiles changes: nothing to follow.
                out.not_compiled.push(NotCompiled {
                    at,
                    text: source.line_text(line),
                    directive: SourceLine {
                        path: file.path.clone(),
                        line: decider.line,
                    },
                    directive_text: decider.text.clone(),
                    why: decider.why.clone(),
                });
                continue;
            }
            let mut not_analysable = |why: String| {
                if flagged.insert((file.path.clone(), line)) {
                    out.not_analysable.push(NotAnalysable {
                        at: at.clone(),
                        text: source.line_text(line),
                        why,
                    });
                }
            };
            let in_function = scanned
                .item_at(line)
                .filter(|item| item.kind == ItemKind::Function);
            if let Some(item) = in_function {
                out.in_function
                    .insert((file.path.clone(), line), item.name.clone());
            }
            match scanned.context(line) {
                Context::Directive(d) => match (d.kind, &d.name) {
                    (DirectiveKind::Define, Some(name)) => {
                        queue.push_back(Pending {
                            name: name.clone(),
                            expansion: out.expansions.len(),
                            through: Vec::new(),
                        });
                        out.expansions.push(Expansion {
                            kind: Followed::Macro,
                            name: name.clone(),
                            changed: at.clone(),
                            through: Vec::new(),
                            uses: Vec::new(),
                            functions: Vec::new(),
                            searched: String::new(),
                            uncompiled_uses: 0,
                        });
                    }
                    (kind, _) if kind.is_conditional() && in_function.is_none() => not_analysable(
                        "a preprocessor conditional outside any function changes: which code is compiled may change".into(),
                    ),
                    (DirectiveKind::Include | DirectiveKind::Undef, _) if in_function.is_none() => {
                        not_analysable(
                            "an #include or #undef changes: what it brings in or takes away is not followed".into(),
                        )
                    }
                    _ => {}
                },
                Context::Item(item) => match item.kind {
                    ItemKind::Function | ItemKind::Declaration => {}
                    ItemKind::Type => {
                        let after: Vec<&(u32, String)> = item
                            .enumerators
                            .iter()
                            .filter(|(l, _)| *l >= line)
                            .collect();
                        if !reported.insert((file.path.clone(), item.first)) {
                            // One report per type: its first changed line.
                        } else if item.enumerators.is_empty() || after.is_empty() {
                            let users = users_of(&mut files, index, &file.path, &tag(&item.name));
                            out.data_changes.push(users.change(
                                DataKind::Type,
                                at.clone(),
                                vec![item.name.clone()],
                                format!(
                                    "{} changes: instances in memory keep the old layout",
                                    item.name
                                ),
                            ));
                        } else {
                            let names: Vec<String> =
                                after.iter().map(|(_, n)| n.clone()).collect();
                            out.data_changes.push(DataChange {
                                kind: DataKind::Enumerator,
                                at: at.clone(),
                                names: names.clone(),
                                users: Vec::new(),
                                more_users: 0,
                                detail: format!(
                                    "{} changes: the values from here on may change; code using them is analysed",
                                    item.name
                                ),
                            });
                            for name in names {
                                queue.push_back(Pending {
                                    name: name.clone(),
                                    expansion: out.expansions.len(),
                                    through: Vec::new(),
                                });
                                out.expansions.push(Expansion {
                                    kind: Followed::Enumerator,
                                    name,
                                    changed: at.clone(),
                                    through: Vec::new(),
                                    uses: Vec::new(),
                                    functions: Vec::new(),
                                    searched: String::new(),
                                    uncompiled_uses: 0,
                                });
                            }
                        }
                    }
                    ItemKind::Data { initialised } => {
                        if reported.insert((file.path.clone(), item.first)) {
                            let users = users_of(&mut files, index, &file.path, &item.name);
                            out.data_changes.push(users.change(
                                DataKind::Data,
                                at.clone(),
                                vec![item.name.clone()],
                                format!(
                                    "the {} of global data {} changes: the running kernel's copy keeps the old one",
                                    if initialised { "initialiser" } else { "declaration" },
                                    item.name
                                ),
                            ));
                        }
                    }
                    ItemKind::Other => not_analysable(
                        "outside any function, type or data definition the source scan recognises"
                            .into(),
                    ),
                },
                Context::FileScope => {
                    if scanned.line_has_code(line) {
                        not_analysable("outside any function, type or data definition".into());
                    }
                }
            }
        }
    }
    follow(&mut files, target, queue, &mut out)?;
    Ok(out)
}

/// `struct foo` -> `foo`; a typedef's name as it is.
fn tag(name: &str) -> String {
    name.rsplit(' ').next().unwrap_or(name).to_owned()
}

/// The files to search for `name`: the index's, or without one the fix's files and the
/// file it is defined in. `None` when the name is too widespread.
fn files_for(
    index: Option<&SourceIndex>,
    paths: &[String],
    defined_in: &str,
    name: &str,
) -> Result<Vec<String>, usize> {
    match index {
        Some(index) => {
            let found = index.files_with(name);
            if found.len() > MAX_FILES_PER_NAME {
                return Err(found.len());
            }
            Ok(found.into_iter().map(str::to_owned).collect())
        }
        None => {
            let mut found: BTreeSet<String> = paths.iter().cloned().collect();
            found.insert(defined_in.to_owned());
            Ok(found.into_iter().collect())
        }
    }
}

/// The functions of the source that use a name, as far as they were looked for.
struct Users {
    /// Sorted.
    functions: Vec<String>,
    /// What limited the search.
    note: Option<String>,
}

impl Users {
    /// A data change of `kind` at `at` with these users.
    fn change(
        self,
        kind: DataKind,
        at: SourceLine,
        names: Vec<String>,
        detail: String,
    ) -> DataChange {
        let more_users = self.functions.len().saturating_sub(MAX_USERS_NAMED);
        let mut detail = detail;
        if let Some(note) = self.note {
            detail.push_str(&format!(" ({note})"));
        }
        DataChange {
            kind,
            at,
            names,
            users: self.functions.into_iter().take(MAX_USERS_NAMED).collect(),
            more_users,
            detail,
        }
    }
}

/// The functions of the source that use `name`. A file that cannot be read is named in
/// the note, not fatal.
fn users_of(
    files: &mut Files<'_>,
    index: Option<&SourceIndex>,
    defined_in: &str,
    name: &str,
) -> Users {
    let mut users = Users {
        functions: Vec::new(),
        note: None,
    };
    if name.is_empty() || name.ends_with("(anonymous)") {
        return users;
    }
    let paths = match files_for(index, &[], defined_in, name) {
        Ok(paths) => paths,
        Err(count) => {
            users.note = Some(format!("{name} is used in {count} files, too many to list"));
            return users;
        }
    };
    if index.is_none() {
        users.note = Some(format!(
            "users looked for in {defined_in} only: no source index"
        ));
    }
    let mut found = BTreeSet::new();
    for path in paths {
        let source = match files.get(&path) {
            Ok(Some(source)) => source,
            Ok(None) => continue,
            Err(e) => {
                users.note = Some(format!("{path} could not be read: {e}"));
                continue;
            }
        };
        let scanned = &source.scanned;
        for line in scanned.lines_using(&source.text, name) {
            if matches!(source.state(line), LineState::NotCompiled(_)) {
                continue;
            }
            if let Some(item) = scanned
                .item_at(line)
                .filter(|i| i.kind == ItemKind::Function)
            {
                found.insert(item.name.clone());
            }
        }
    }
    users.functions = found.into_iter().collect();
    users
}

/// Follows the queued macros and enumerators to the lines that use them.
fn follow(
    files: &mut Files<'_>,
    target: &Target<'_>,
    mut queue: VecDeque<Pending>,
    out: &mut Reach,
) -> Result<(), SourceError> {
    let (index, paths) = (target.index, target.paths);
    let mut seen: HashSet<String> = HashSet::new();
    // (expansion, path, line) of the uses left out as not compiled, each counted once.
    let mut uncompiled: HashSet<(usize, String, u32)> = HashSet::new();
    let mut extra: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let mut use_lines = 0usize;
    let mut flagged: HashSet<(String, u32)> = HashSet::new();
    while let Some(Pending {
        name,
        expansion,
        through,
    }) = queue.pop_front()
    {
        if !seen.insert(name.clone()) {
            continue;
        }
        let defined_in = out.expansions[expansion].changed.path.clone();
        let searched = match index {
            Some(index) if index.skipped().is_empty() => "the source index".to_owned(),
            Some(index) => format!(
                "the source index, which left out {} file(s): {}",
                index.skipped().len(),
                index
                    .skipped()
                    .iter()
                    .map(|(path, why)| format!("{path} ({why})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => {
                let is_header = !defined_in.ends_with(".c");
                if is_header && through.is_empty() {
                    let at = out.expansions[expansion].changed.clone();
                    out.not_analysable.push(NotAnalysable {
                        text: String::new(),
                        why: format!(
                            "{name} is defined in a header: without a source index its uses in other files cannot be found"
                        ),
                        at,
                    });
                }
                let mut read: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
                read.insert(&defined_in);
                read.into_iter().collect::<Vec<_>>().join(", ")
            }
        };
        if out.expansions[expansion].searched.is_empty() {
            out.expansions[expansion].searched = searched;
        }
        let search = match files_for(index, paths, &defined_in, &name) {
            Ok(search) => search,
            Err(count) => {
                let at = out.expansions[expansion].changed.clone();
                out.not_analysable.push(NotAnalysable {
                    text: String::new(),
                    why: format!(
                        "{name} is used in {count} files: too widespread to follow; every function using it changes"
                    ),
                    at,
                });
                continue;
            }
        };
        for path in search {
            let source = match files.get(&path) {
                Ok(Some(source)) => source,
                Ok(None) => continue,
                Err(e) => {
                    // One unreadable file costs its uses, said, not the analysis.
                    let at = out.expansions[expansion].changed.clone();
                    out.not_analysable.push(NotAnalysable {
                        text: String::new(),
                        why: format!("uses of {name} in {path} could not be read: {e}"),
                        at,
                    });
                    continue;
                }
            };
            let (text, scanned) = (&source.text, &source.scanned);
            // Per conditional (by first line): whether it keeps its value. A long `#if`
            // using the name on many of its lines is evaluated once.
            let mut stays: HashMap<u32, bool> = HashMap::new();
            for line in scanned.lines_using(text, &name) {
                let at = SourceLine {
                    path: path.clone(),
                    line,
                };
                let not_compiled = matches!(source.state(line), LineState::NotCompiled(_));
                let mut left_out = |out: &mut Reach| {
                    if uncompiled.insert((expansion, path.clone(), line)) {
                        out.expansions[expansion].uncompiled_uses += 1;
                        out.left_out
                            .entry((path.clone(), line))
                            .or_insert(expansion);
                    }
                };
                match scanned.context(line) {
                    Context::Directive(d) => match (d.kind, &d.name) {
                        (DirectiveKind::Define, Some(other)) if *other != name => {
                            if not_compiled {
                                left_out(out);
                                continue;
                            }
                            let mut next = through.clone();
                            next.push(other.clone());
                            if !out.expansions[expansion].through.contains(other) {
                                out.expansions[expansion].through.push(other.clone());
                            }
                            queue.push_back(Pending {
                                name: other.clone(),
                                expansion,
                                through: next,
                            });
                        }
                        (DirectiveKind::If | DirectiveKind::Elif, _) => {
                            if not_compiled {
                                left_out(out);
                                continue;
                            }
                            if *stays
                                .entry(d.first)
                                .or_insert_with(|| condition_stays(&source, d, &name, target))
                            {
                                continue;
                            }
                            if flagged.insert((path.clone(), line)) {
                                out.not_analysable.push(NotAnalysable {
                                    text: source.line_text(line),
                                    why: format!(
                                        "{name} is tested by a preprocessor conditional: which code is compiled may change"
                                    ),
                                    at,
                                });
                            }
                        }
                        _ => {}
                    },
                    Context::Item(item)
                        if matches!(item.kind, ItemKind::Type | ItemKind::Data { .. }) =>
                    {
                        if not_compiled {
                            left_out(out);
                            continue;
                        }
                        let kind = if item.kind == ItemKind::Type {
                            "type"
                        } else {
                            "global data"
                        };
                        out.data_changes.push(DataChange {
                            kind: DataKind::Constant,
                            at,
                            names: vec![name.clone(), item.name.clone()],
                            users: Vec::new(),
                            more_users: 0,
                            detail: format!(
                                "{} is used in the {kind} {}: its layout or value changes, and the running kernel's keep the old",
                                out.expansions[expansion].name, item.name
                            ),
                        });
                    }
                    _ => {
                        if not_compiled {
                            left_out(out);
                            continue;
                        }
                        if use_lines >= MAX_USE_LINES {
                            if flagged.insert((String::new(), 0)) {
                                let at = out.expansions[expansion].changed.clone();
                                out.not_analysable.push(NotAnalysable {
                                    text: String::new(),
                                    why: format!(
                                        "more than {MAX_USE_LINES} lines use the changed macros and enumerators: the rest are not analysed"
                                    ),
                                    at,
                                });
                            }
                            continue;
                        }
                        if extra.entry(path.clone()).or_default().insert(line) {
                            use_lines += 1;
                            let chain = if through.is_empty() {
                                String::new()
                            } else {
                                format!(" through {}", through.join(", "))
                            };
                            let origin = &out.expansions[expansion];
                            out.via.entry((path.clone(), line)).or_insert_with(|| {
                                format!(
                                    "which uses {}{chain} (changed at {}:{})",
                                    origin.name, origin.changed.path, origin.changed.line
                                )
                            });
                        }
                        if !out.expansions[expansion].uses.contains(&at) {
                            out.expansions[expansion].uses.push(at);
                        }
                    }
                }
            }
        }
    }
    out.extra = extra
        .into_iter()
        .map(|(path, lines)| ChangedLines {
            path,
            lines: lines.into_iter().collect(),
        })
        .collect();
    for expansion in &mut out.expansions {
        expansion.uses.sort();
    }
    Ok(())
}

/// Whether a compiled `#if` or `#elif` testing the changed macro `name` keeps its value
/// whatever the change (only with a configuration; without, every such conditional is
/// reported): when the configuration decides it without the macro, or when it tests
/// the macro only with `defined` and the fix changes the macro's body, not whether it is
/// defined. A changed `CONFIG_` macro is never passed over: the configuration's value
/// of it is the one the change replaces.
fn condition_stays(source: &Source, d: &scan::Directive, name: &str, target: &Target<'_>) -> bool {
    let (Some(config), Some(conditions)) = (target.config, &source.conditions) else {
        return false;
    };
    if name.starts_with("CONFIG_") {
        return false;
    }
    if conditions.evaluate(&source.text, d, config) != Truth::Unknown {
        return true;
    }
    !target.redefined.contains(name)
        && only_under_defined(&conditions.expression(&source.text, d), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redefined(diff: &str) -> Vec<String> {
        let patch = crate::patch::parse(diff.as_bytes()).unwrap();
        let mut names: Vec<String> = definedness_changes(&patch).into_iter().collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_body_is_told_from_a_definition_that_comes_or_goes() {
        // A new body, the definition's first line or a continuation line.
        let body =
            "--- a/k.h\n+++ b/k.h\n@@ -1,3 +1,3 @@\n a\n-#define FOO 1\n+#define FOO 2\n b\n";
        assert!(redefined(body).is_empty());
        let continuation = "--- a/k.h\n+++ b/k.h\n@@ -1,3 +1,3 @@\n #define FOO(x) \\\n-\t((x) + 1)\n+\t((x) + 2)\n b\n";
        assert!(redefined(continuation).is_empty());
        // Removed, added, undefined, or moved under a conditional.
        let removed = "--- a/k.h\n+++ b/k.h\n@@ -1,3 +1,2 @@\n a\n-#define FOO 1\n b\n";
        assert_eq!(redefined(removed), ["FOO"]);
        let added = "--- a/k.h\n+++ b/k.h\n@@ -1,2 +1,3 @@\n a\n+# define BAR 1\n b\n";
        assert_eq!(redefined(added), ["BAR"]);
        let undef = "--- a/k.h\n+++ b/k.h\n@@ -1,2 +1,3 @@\n a\n+#undef BAZ\n b\n";
        assert_eq!(redefined(undef), ["BAZ"]);
        let guarded = "--- a/k.h\n+++ b/k.h\n@@ -1,3 +1,5 @@\n a\n-#define FOO 1\n+#ifdef CONFIG_X\n+#define FOO 1\n+#endif\n b\n";
        assert_eq!(redefined(guarded), ["FOO"]);
        // Two blocks of one hunk: removed in one, added in the other.
        let split =
            "--- a/k.h\n+++ b/k.h\n@@ -1,4 +1,4 @@\n a\n-#define FOO 1\n b\n+#define FOO 1\n c\n";
        assert_eq!(redefined(split), ["FOO"]);
    }
}
