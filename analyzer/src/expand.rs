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

use crate::impact::ChangedLines;
use crate::source::scan::{self, Context, DirectiveKind, ItemKind, Scan};
use crate::source::{SourceError, SourceIndex, SourceTree};
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
    /// The fix's changed lines the source places inside a function: (path, line) to its
    /// name.
    pub(crate) in_function: BTreeMap<(String, u32), String>,
}

/// A file's text and its scan.
type Scanned = Rc<(Vec<u8>, Scan)>;

/// The files read so far, scanned: each is read once however many names lead to it.
struct Files<'t> {
    tree: &'t dyn SourceTree,
    read: HashMap<String, Option<Scanned>>,
}

impl<'t> Files<'t> {
    fn get(&mut self, path: &str) -> Result<Option<Scanned>, SourceError> {
        if let Some(file) = self.read.get(path) {
            return Ok(file.clone());
        }
        let file = self.tree.read(path)?.map(|text| {
            let scanned = scan::scan(&text);
            Rc::new((text, scanned))
        });
        self.read.insert(path.to_owned(), file.clone());
        Ok(file)
    }
}

fn line_text(text: &[u8], line: u32) -> String {
    text.split(|&b| b == b'\n')
        .nth(line as usize - 1)
        .map(|l| String::from_utf8_lossy(l).trim_end().to_owned())
        .unwrap_or_default()
}

/// A name queued to follow: what it is, which expansion it serves, the macros between.
struct Pending {
    name: String,
    expansion: usize,
    through: Vec<String>,
}

/// Follows the fix's changed lines (target numbering) through the source: macros and
/// enumerators to their uses, types and data to their users. `paths` are the fix's
/// files, searched when there is no source index.
pub(crate) fn reach(
    changed: &[ChangedLines],
    tree: &dyn SourceTree,
    index: Option<&SourceIndex>,
    paths: &[String],
) -> Result<Reach, SourceError> {
    let mut files = Files {
        tree,
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
        let (text, scanned) = (&source.0, &source.1);
        for &line in &file.lines {
            let at = SourceLine {
                path: file.path.clone(),
                line,
            };
            let mut not_analysable = |why: String| {
                if flagged.insert((file.path.clone(), line)) {
                    out.not_analysable.push(NotAnalysable {
                        at: at.clone(),
                        text: line_text(text, line),
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
                        });
                    }
                    (
                        DirectiveKind::If
                        | DirectiveKind::Ifdef
                        | DirectiveKind::Ifndef
                        | DirectiveKind::Elif
                        | DirectiveKind::Else
                        | DirectiveKind::Endif,
                        _,
                    ) if in_function.is_none() => not_analysable(
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
    follow(&mut files, index, paths, queue, &mut out)?;
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
        let (text, scanned) = (&source.0, &source.1);
        for line in scanned.lines_using(text, name) {
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
    index: Option<&SourceIndex>,
    paths: &[String],
    mut queue: VecDeque<Pending>,
    out: &mut Reach,
) -> Result<(), SourceError> {
    let mut seen: HashSet<String> = HashSet::new();
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
            let (text, scanned) = (&source.0, &source.1);
            for line in scanned.lines_using(text, &name) {
                let at = SourceLine {
                    path: path.clone(),
                    line,
                };
                match scanned.context(line) {
                    Context::Directive(d) => match (d.kind, &d.name) {
                        (DirectiveKind::Define, Some(other)) if *other != name => {
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
                        (DirectiveKind::If | DirectiveKind::Elif, _)
                            if flagged.insert((path.clone(), line)) =>
                        {
                            out.not_analysable.push(NotAnalysable {
                                text: line_text(text, line),
                                why: format!(
                                    "{name} is tested by a preprocessor conditional: which code is compiled may change"
                                ),
                                at,
                            });
                        }
                        _ => {}
                    },
                    Context::Item(item)
                        if matches!(item.kind, ItemKind::Type | ItemKind::Data { .. }) =>
                    {
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
