//! The impact graph of one analysis, laid out for the patch page.
//!
//! Layered left to right: the fix's hunks, the functions whose source they change, where
//! that code went (the functions it was inlined into, clones whose calling convention
//! changed, the callers of what cannot be replaced), and what the live patch replaces or
//! cannot. Each node knows the diff cells its code came from and the nodes and edges on
//! the paths through it, so the page can highlight both without asking the server.
//!
//! A layer with more than [`GROUP_OVER`] functions shows them as groups by object and
//! source directory (a change to `include/linux/list.h` reaches a thousand functions):
//! one node per group, its members listed under the graph. Everything here is linear in
//! the report's size but the related sets, which are bounded by grouping: at most
//! [`MAX_VISIBLE_PER_LAYER`] nodes per layer.

use analyzer::impact::{HunkOutcome, ImpactReport, LineBasis, Step};
use analyzer::onto::HunkState;
use analyzer::patch::{LineKind, Patch};
use analyzer::pitfalls::Pitfall;
use graftbench_app::model::{
    CannotReplace, GraphColumn, GraphEdge, GraphGroup, GraphNode, GroupMember, ImpactGraph,
    NodeKind,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Node width, px.
const NODE_W: u32 = 172;
/// Node height, px.
const NODE_H: u32 = 38;
/// Space between nodes of a layer, px.
const GAP_Y: u32 = 10;
/// Space between layers, px.
const GAP_X: u32 = 52;
/// Room for the layers' headings, px.
const TOP: u32 = 26;
/// The characters of a label that fit in a node.
const LABEL_CHARS: usize = 24;
/// Layers for where the code went, at most: a longer chain folds into the last one.
const MAX_SITE_LAYERS: usize = 3;
/// A layer with more functions than this shows them grouped.
pub const GROUP_OVER: usize = 16;
/// Groups per layer, at most: beyond, directories are cut to their top level, and
/// beyond that, groups are per object.
pub const MAX_VISIBLE_PER_LAYER: usize = 40;

/// Identity of a node before layout.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Hunk(usize),
    Changed(String, String),
    Site(String, String),
    Replace(String, String, u32),
    Blocked(String, String),
}

#[derive(Debug, Clone, Default)]
struct Draft {
    kind: Option<NodeKind>,
    label: String,
    object: String,
    marks: BTreeSet<String>,
    title: Vec<String>,
    /// Source file, for grouping.
    file: String,
    /// Diff cells.
    lines: BTreeSet<String>,
    /// Site depth (1 = first layer after the changed functions).
    depth: usize,
}

/// The diff cells a node lights, at most: a rewrite of thousands of lines lights its
/// first ones (the response and the page's work stay bounded).
pub const MAX_CELLS_PER_NODE: usize = 400;

/// What the diff's cells are keyed by, and where the report's lines are in the fix.
struct FixLines {
    /// Each block of changes (consecutive changed lines of a hunk): its cells' `data-k`
    /// keys, the insertion's neighbours included.
    blocks: Vec<Vec<String>>,
    /// (path, fix old-side line) to the blocks that change it.
    block_of: HashMap<(String, u32), Vec<usize>>,
    /// Every hunk of a file with an old side: (path, number from 1) to its fix old-side
    /// (start, lines).
    ranges: HashMap<(String, u32), (u32, u32)>,
    /// Per path, each analysed hunk in file order: (number, old start, old lines, offset
    /// to the report's basis).
    analysed: HashMap<String, Vec<(u32, u32, u32, i64)>>,
    /// (path, hunk number) to its index in the report's hunks.
    report_hunk: HashMap<(String, u32), usize>,
}

impl FixLines {
    fn new(patch: &Patch, report: &ImpactReport) -> FixLines {
        let report_hunk: HashMap<(String, u32), usize> = report
            .hunks
            .iter()
            .enumerate()
            .map(|(i, h)| ((h.path.clone(), h.hunk), i))
            .collect();
        let mut blocks: Vec<Vec<String>> = Vec::new();
        let mut block_of: HashMap<(String, u32), Vec<usize>> = HashMap::new();
        let mut ranges = HashMap::new();
        let mut analysed: HashMap<String, Vec<(u32, u32, u32, i64)>> = HashMap::new();
        for (index, file) in patch.files.iter().enumerate() {
            let Some(path) = &file.old_path else { continue };
            for (number, hunk) in (1u32..).zip(&file.hunks) {
                ranges.insert((path.clone(), number), (hunk.old_start, hunk.old_lines));
                let offset = report_hunk
                    .get(&(path.clone(), number))
                    .map(|&i| &report.hunks[i])
                    .filter(|h| h.analysed)
                    .map(|h| match &h.outcome {
                        HunkOutcome::Placed(HunkState::Applied { offset, .. })
                            if report.basis == LineBasis::TargetSource =>
                        {
                            *offset
                        }
                        _ => 0,
                    });
                if let Some(offset) = offset {
                    analysed.entry(path.clone()).or_default().push((
                        number,
                        hunk.old_start,
                        hunk.old_lines,
                        offset,
                    ));
                }
                // Each block of changes, once; the old lines it changes point to it.
                let lines = &hunk.lines;
                for std::ops::Range { start, end: i } in analyzer::impact::change_blocks(lines) {
                    let block = &lines[start..i];
                    let mut cells: Vec<String> = block
                        .iter()
                        .filter_map(|l| match (l.kind, l.old_line, l.new_line) {
                            (LineKind::Removed, Some(old), _) => Some(format!("f{index}-o{old}")),
                            (_, _, Some(new)) => Some(format!("f{index}-n{new}")),
                            _ => None,
                        })
                        .collect();
                    let mut changed: Vec<u32> = block.iter().filter_map(|l| l.old_line).collect();
                    if changed.is_empty() {
                        // An insertion changes the lines around it.
                        for neighbour in [start.checked_sub(1), Some(i)].into_iter().flatten() {
                            if let Some(old) = lines.get(neighbour).and_then(|l| l.old_line) {
                                changed.push(old);
                                cells.push(format!("f{index}-o{old}"));
                            }
                        }
                    }
                    let id = blocks.len();
                    blocks.push(cells);
                    for old in changed {
                        block_of.entry((path.clone(), old)).or_default().push(id);
                    }
                }
            }
        }
        for hunks in analysed.values_mut() {
            hunks.sort_by_key(|h| h.1);
        }
        FixLines {
            blocks,
            block_of,
            ranges,
            analysed,
            report_hunk,
        }
    }

    /// The cells of `blocks`, at most [`MAX_CELLS_PER_NODE`].
    fn cells_of(&self, blocks: impl IntoIterator<Item = usize>) -> BTreeSet<String> {
        let mut cells = BTreeSet::new();
        for block in blocks {
            for cell in &self.blocks[block] {
                if cells.len() >= MAX_CELLS_PER_NODE {
                    return cells;
                }
                cells.insert(cell.clone());
            }
        }
        cells
    }

    /// The cells of hunk `number` of `path`.
    fn hunk_cells(&self, path: &str, number: u32) -> BTreeSet<String> {
        let Some(&(start, count)) = self.ranges.get(&(path.to_owned(), number)) else {
            return BTreeSet::new();
        };
        let blocks: BTreeSet<usize> = (start..start.saturating_add(count.max(1)))
            .filter_map(|line| self.block_of.get(&(path.to_owned(), line)))
            .flatten()
            .copied()
            .collect();
        self.cells_of(blocks)
    }

    /// The analysed hunk of `path` whose old side holds the report's `line`: its number
    /// and the fix's line.
    fn hunk_at(&self, path: &str, line: u32) -> Option<(u32, u32)> {
        let hunks = self.analysed.get(path)?;
        // Hunks are in file order: the last one starting at or before the line.
        let after = hunks
            .partition_point(|&(_, start, _, offset)| i64::from(start) + offset <= i64::from(line));
        let &(number, start, count, offset) = hunks.get(after.checked_sub(1)?)?;
        let fix = i64::from(line) - offset;
        (fix >= i64::from(start) && fix < i64::from(start) + i64::from(count.max(1)))
            .then(|| u32::try_from(fix).ok().map(|fix| (number, fix)))
            .flatten()
    }

    /// The fix's line for the report's `line` of `path`, when a hunk that was analysed
    /// covers it.
    fn to_fix(&self, path: &str, line: u32) -> Option<u32> {
        self.hunk_at(path, line).map(|(_, fix)| fix)
    }

    /// The blocks changing the report's `line` of `path`.
    fn blocks_at(&self, path: &str, line: u32) -> impl Iterator<Item = usize> + '_ {
        self.to_fix(path, line)
            .and_then(|fix| self.block_of.get(&(path.to_owned(), fix)))
            .into_iter()
            .flatten()
            .copied()
    }
}

/// A function's name without its clone suffixes (`req_len.isra.0` is `req_len`).
fn base_name(symbol: &str) -> &str {
    symbol.split('.').next().unwrap_or(symbol)
}

/// A tree-relative directory for a file as the debug information names it: build
/// directories and `./` are dropped (`/build/linux-x/fs/ext4/inode.c` is `fs/ext4`), cut
/// to `depth` components.
fn directory(file: &str, depth: usize) -> String {
    const TOP_LEVEL: [&str; 19] = [
        "arch", "block", "certs", "crypto", "drivers", "fs", "include", "init", "io_uring", "ipc",
        "kernel", "lib", "mm", "net", "rust", "samples", "security", "sound", "virt",
    ];
    let parts: Vec<&str> = file
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let start = parts
        .iter()
        .position(|p| TOP_LEVEL.contains(p))
        .unwrap_or(0);
    let dirs = &parts[start..parts.len().saturating_sub(1)];
    dirs[..dirs.len().min(depth)].join("/")
}

fn shorten(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(chars.saturating_sub(1)).collect();
        short.push('…');
        short
    }
}

fn hunk_detail(outcome: &HunkOutcome) -> (NodeKind, String) {
    match outcome {
        HunkOutcome::Placed(HunkState::Applied { offset, fuzz, .. }) => {
            let mut detail = if *offset == 0 {
                "applies".to_owned()
            } else {
                format!("applies, offset {offset:+}")
            };
            if *fuzz > 0 {
                detail.push_str(&format!(", fuzz {fuzz}"));
            }
            (NodeKind::Hunk, detail)
        }
        HunkOutcome::Placed(HunkState::AlreadyApplied { at }) => (
            NodeKind::HunkNotApplied,
            format!("already applied at line {at}"),
        ),
        HunkOutcome::Placed(HunkState::NotFound) => {
            (NodeKind::HunkNotApplied, "does not apply".to_owned())
        }
        HunkOutcome::Placed(HunkState::FileMissing) => (
            NodeKind::HunkNotApplied,
            "does not apply: no such file".to_owned(),
        ),
        HunkOutcome::Placed(HunkState::NewFile) => (NodeKind::Hunk, "a new file".to_owned()),
        HunkOutcome::Checked(verdict) => {
            if verdict.analysed() {
                (NodeKind::Hunk, "as written".to_owned())
            } else {
                (
                    NodeKind::HunkNotApplied,
                    "does not match the build".to_owned(),
                )
            }
        }
    }
}

struct Builder<'a> {
    report: &'a ImpactReport,
    fix: FixLines,
    nodes: BTreeMap<Key, Draft>,
    order: Vec<Key>,
    /// Each edge once, with what ties its ends.
    edges: BTreeMap<(Key, Key), String>,
    /// Source file of functions by name, for grouping.
    files: HashMap<&'a str, &'a str>,
    /// A line using a changed macro or enumerator to the changed lines it uses.
    uses: HashMap<(&'a str, u32), Vec<(&'a str, u32)>>,
}

impl<'a> Builder<'a> {
    fn node(&mut self, key: Key) -> &mut Draft {
        if !self.nodes.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.nodes.entry(key).or_default()
    }

    fn edge(&mut self, from: &Key, to: &Key, label: String) {
        self.edges
            .entry((from.clone(), to.clone()))
            .or_insert(label);
    }

    fn hunks(&mut self) {
        for (i, hunk) in self.report.hunks.iter().enumerate() {
            let (kind, detail) = hunk_detail(&hunk.outcome);
            let file = hunk.path.rsplit('/').next().unwrap_or(&hunk.path);
            let cells = self.fix.hunk_cells(&hunk.path, hunk.hunk);
            let draft = self.node(Key::Hunk(i));
            draft.kind = Some(kind);
            draft.file = hunk.path.clone();
            draft.label = format!("{file} hunk {}", hunk.hunk);
            draft.marks.insert(detail.clone());
            draft.title.push(format!(
                "{} hunk {} (line {} in the fix): {detail}",
                hunk.path, hunk.hunk, hunk.fix_line
            ));
            draft.lines = cells;
        }
    }

    /// The analysed hunk (its index in the report) holding the fix line of report line
    /// `line` of `path`.
    fn hunks_of(&self, path: &str, line: u32) -> Option<usize> {
        let (number, _) = self.fix.hunk_at(path, line)?;
        self.fix
            .report_hunk
            .get(&(path.to_owned(), number))
            .copied()
    }

    fn changed(&mut self) {
        let report = self.report;
        for function in &report.changed_functions {
            let key = Key::Changed(function.object.clone(), function.name.clone());
            // The fix's own lines, and for a line using a changed macro the macro's.
            let mut origins: BTreeSet<(&str, u32)> = BTreeSet::new();
            for at in &function.lines {
                if self.fix.to_fix(&at.path, at.line).is_some() {
                    origins.insert((at.path.as_str(), at.line));
                }
                for changed in self
                    .uses
                    .get(&(at.path.as_str(), at.line))
                    .into_iter()
                    .flatten()
                {
                    origins.insert(*changed);
                }
            }
            let blocks: BTreeSet<usize> = origins
                .iter()
                .flat_map(|&(path, line)| self.fix.blocks_at(path, line))
                .collect();
            let cells = self.fix.cells_of(blocks);
            let hunks: BTreeSet<usize> = origins
                .iter()
                .filter_map(|&(path, line)| self.hunks_of(path, line))
                .collect();
            let draft = self.node(key.clone());
            draft.kind = Some(NodeKind::Changed);
            draft.label = format!("{}()", function.name);
            draft.object = function.object.clone();
            draft.file = function.decl_file.clone();
            draft.title.push(format!(
                "{}() in {} ({}:{}): {}",
                function.name,
                function.object,
                function.decl_file,
                function.decl_line,
                function.evidence
            ));
            draft.lines = cells;
            for hunk in hunks {
                self.edge(&Key::Hunk(hunk), &key, "changes".to_owned());
            }
        }
    }

    /// One path from a changed function to `last`.
    fn path(&mut self, object: &str, path: &[Step], last: Key, last_title: String) {
        let Some(Step::Changed { function, .. }) = path.first() else {
            return;
        };
        let site = |name: &str| Key::Site(object.to_owned(), name.to_owned());
        // (node, label of the edge into it)
        let mut chain: Vec<(Key, String)> = vec![(
            Key::Changed(object.to_owned(), function.clone()),
            String::new(),
        )];
        let mut marks: Vec<String> = Vec::new();
        for step in &path[1..] {
            match step {
                Step::Inlined {
                    into,
                    file,
                    line,
                    through,
                    ..
                } => {
                    // A nested chain as a chain: the copy sits in `through[0]`'s copy,
                    // which sits in the next, ..., in `into`.
                    let mut label = format!("inlined at {file}:{line}");
                    for outer in through {
                        chain.push((site(outer), std::mem::replace(&mut label, "inlined".into())));
                    }
                    chain.push((site(into), label));
                }
                Step::Called { caller, tail, .. } => chain.push((
                    site(caller),
                    if *tail { "tail-calls" } else { "calls" }.to_owned(),
                )),
                Step::Blocked {
                    symbol, abi_change, ..
                } => {
                    let key = Key::Blocked(object.to_owned(), symbol.clone());
                    let label = if abi_change.is_some() {
                        "clone, ABI changed"
                    } else {
                        "its copy"
                    };
                    chain.push((key, label.to_owned()));
                }
                Step::ColdParts { parts, .. } => {
                    marks.push(format!("with {}", parts.join(", ")));
                }
                Step::Changed { .. } | Step::Entry { .. } => {}
            }
        }
        // The last node stands for the function it is reached in: a site of the same
        // function just before it folds into it.
        let last_name = match &last {
            Key::Replace(_, symbol, _) | Key::Blocked(_, symbol) => base_name(symbol).to_owned(),
            _ => String::new(),
        };
        let into_last = match chain.last() {
            Some((Key::Changed(..), _)) | None => {
                let label = match &last {
                    Key::Replace(_, symbol, _) if symbol.as_str() == function => "replaced",
                    Key::Replace(_, symbol, _) if base_name(symbol) == function => "clone",
                    _ => "its copy",
                };
                label.to_owned()
            }
            Some((Key::Site(_, name), _)) if *name == last_name => {
                chain.pop().map(|(_, label)| label).unwrap_or_default()
            }
            Some((key, _)) if *key == last => {
                chain.pop().map(|(_, label)| label).unwrap_or_default()
            }
            Some((Key::Blocked(..), _)) => "callers replaced".to_owned(),
            Some(_) => "replaced".to_owned(),
        };
        chain.push((last.clone(), into_last));
        // The nodes on the way (all but the last), at their shallowest depth.
        for (depth, (key, _)) in chain.iter().enumerate().take(chain.len() - 1) {
            let (Key::Site(_, name) | Key::Blocked(_, name)) = key else {
                continue;
            };
            let file = self.files.get(base_name(name)).copied().unwrap_or_default();
            let draft = self.node(key.clone());
            if draft.kind.is_none() {
                draft.kind = Some(match key {
                    Key::Blocked(..) => NodeKind::Blocked,
                    _ => NodeKind::Site,
                });
                draft.object = object.to_owned();
                draft.file = file.to_owned();
                draft.depth = depth;
            }
            draft.depth = draft.depth.min(depth);
            draft.label = format!("{name}()");
            if draft.title.is_empty() {
                draft.title.push(format!("{name}() in {object}"));
            }
        }
        let draft = self.node(last.clone());
        draft.marks.extend(marks);
        if draft.title.is_empty() {
            draft.title.push(last_title);
        }
        for pair in chain.windows(2) {
            let (from, _) = &pair[0];
            let (to, label) = &pair[1];
            self.edge(from, to, label.clone());
        }
    }

    fn finals(&mut self) {
        let report = self.report;
        for r in &report.replace {
            let key = Key::Replace(r.object.clone(), r.symbol.clone(), r.old_sympos);
            let draft = self.node(key.clone());
            draft.kind = Some(NodeKind::Replace);
            draft.label = format!("{}()", r.symbol);
            draft.object = r.object.clone();
            draft.file = r.file.clone();
            draft.depth = usize::MAX;
            let mut detail = r.object.clone();
            if r.old_sympos > 0 {
                detail.push_str(&format!(", sympos {}", r.old_sympos));
            }
            if r.symbol.contains('.') {
                draft.marks.insert("clone".to_owned());
            }
            draft.marks.insert(detail);
            let title = format!(
                "replace {} in {}: {}",
                r.symbol,
                r.object,
                r.reasons.join("; ")
            );
            self.path(&r.object, &r.path, key, title);
        }
        for u in &report.unpatchable {
            let key = Key::Blocked(u.object.clone(), u.symbol.clone());
            let draft = self.node(key.clone());
            draft.kind = Some(NodeKind::Blocked);
            draft.label = format!("{}()", u.symbol);
            draft.object = u.object.clone();
            draft.marks.insert(
                if u.why.starts_with("clone with a changed calling convention") {
                    "ABI changed".to_owned()
                } else {
                    shorten(&u.why, 28)
                },
            );
            draft.title = vec![format!(
                "{} in {} cannot be replaced: {}; {}",
                u.symbol, u.object, u.why, u.resolution
            )];
            // Its path ends in its own Blocked step, which is `key` itself.
            let path = match u.path.last() {
                Some(Step::Blocked { .. }) => &u.path[..u.path.len() - 1],
                _ => &u.path[..],
            };
            if !path.is_empty() {
                self.path(&u.object, path, key, String::new());
            }
        }
    }
}

/// The graph of `report` (an analysis of `patch` as submitted), its lists filtered by
/// `query` (case-insensitive; empty: everything).
pub fn build(report: &ImpactReport, patch: &Patch, query: &str) -> ImpactGraph {
    let mut builder = Builder {
        report,
        fix: FixLines::new(patch, report),
        nodes: BTreeMap::new(),
        order: Vec::new(),
        edges: BTreeMap::new(),
        files: report
            .replace
            .iter()
            .map(|r| (base_name(&r.symbol), r.file.as_str()))
            .chain(
                report
                    .changed_functions
                    .iter()
                    .map(|f| (f.name.as_str(), f.decl_file.as_str())),
            )
            .collect(),
        uses: HashMap::new(),
    };
    for expansion in &report.expansions {
        for at in &expansion.uses {
            builder
                .uses
                .entry((at.path.as_str(), at.line))
                .or_default()
                .push((expansion.changed.path.as_str(), expansion.changed.line));
        }
    }
    builder.hunks();
    builder.changed();
    builder.finals();
    let Builder {
        nodes,
        order,
        edges,
        ..
    } = builder;

    // Layers: a blocked function whose callers are replaced is on the way, not an end.
    let has_out: BTreeSet<&Key> = edges.keys().map(|(from, _)| from).collect();
    let site_layers = nodes
        .iter()
        .filter(|(key, _)| {
            matches!(key, Key::Site(..))
                || (matches!(key, Key::Blocked(..)) && has_out.contains(key))
        })
        .map(|(_, d)| d.depth.clamp(1, MAX_SITE_LAYERS))
        .max()
        .unwrap_or(0);
    let last_layer = 2 + site_layers.max(1) as u32;
    let layer_of = |key: &Key, draft: &Draft| -> u32 {
        match key {
            Key::Hunk(_) => 0,
            Key::Changed(..) => 1,
            Key::Site(..) => 1 + draft.depth.clamp(1, MAX_SITE_LAYERS) as u32,
            Key::Blocked(..) if has_out.contains(key) => {
                1 + draft.depth.clamp(1, MAX_SITE_LAYERS) as u32
            }
            Key::Blocked(..) | Key::Replace(..) => last_layer,
        }
    };

    // Grouping: per layer, many functions become one node per object and directory.
    let lowered = query.trim().to_lowercase();
    let mut layers: Vec<Vec<&Key>> = vec![Vec::new(); last_layer as usize + 1];
    for key in &order {
        layers[layer_of(key, &nodes[key]) as usize].push(key);
    }
    let mut visible_of: HashMap<&Key, usize> = HashMap::new();
    let mut drafts: Vec<(u32, Draft, Option<u32>)> = Vec::new();
    let mut groups: Vec<GraphGroup> = Vec::new();
    let mut hidden_by_search = 0;
    let columns_titles = column_titles(last_layer);
    for (layer, keys) in layers.iter().enumerate() {
        // Hunks are grouped only when there are very many (by file then); functions
        // beyond a handful.
        let limit = if layer == 0 {
            MAX_VISIBLE_PER_LAYER
        } else {
            GROUP_OVER
        };
        if keys.len() <= limit {
            for key in keys {
                visible_of.insert(key, drafts.len());
                drafts.push((layer as u32, nodes[*key].clone(), None));
            }
            continue;
        }
        // Ever coarser until few enough: object and two directory levels, one level, the
        // object, vmlinux or a module (hunks: their file first).
        let mut by_group: BTreeMap<String, Vec<&Key>> = BTreeMap::new();
        for level in 0..5 {
            by_group.clear();
            for key in keys {
                by_group
                    .entry(group_name(&nodes[*key], layer == 0, level))
                    .or_default()
                    .push(key);
            }
            if by_group.len() <= MAX_VISIBLE_PER_LAYER {
                break;
            }
        }
        for (name, members) in by_group {
            let group_index = groups.len() as u32;
            let mut draft = Draft {
                kind: Some(NodeKind::Group),
                label: name.clone(),
                ..Draft::default()
            };
            let mut listed = Vec::new();
            for key in &members {
                visible_of.insert(key, drafts.len());
                let member = &nodes[*key];
                for cell in &member.lines {
                    if draft.lines.len() >= MAX_CELLS_PER_NODE {
                        break;
                    }
                    draft.lines.insert(cell.clone());
                }
                let entry = GroupMember {
                    name: member.label.clone(),
                    why: member.title.join("; "),
                };
                if lowered.is_empty() || entry.name.to_lowercase().contains(&lowered) {
                    listed.push(entry);
                } else {
                    hidden_by_search += 1;
                }
            }
            let blocked = members
                .iter()
                .filter(|k| nodes[**k].kind == Some(NodeKind::Blocked))
                .count();
            draft.marks.insert(format!("{} function(s)", members.len()));
            if blocked > 0 {
                draft.marks.insert(format!("{blocked} cannot be replaced"));
            }
            if !lowered.is_empty() && !listed.is_empty() {
                draft.marks.insert(format!("{} match", listed.len()));
            }
            draft.title = vec![format!(
                "{name}: {} function(s) in {}",
                members.len(),
                columns_titles[layer].to_lowercase()
            )];
            groups.push(GraphGroup {
                name,
                layer: columns_titles[layer].clone(),
                members: listed,
                total: members.len(),
            });
            drafts.push((layer as u32, draft, Some(group_index)));
        }
    }

    // Edges between visible nodes, merged.
    let mut merged: BTreeMap<(usize, usize), (String, usize)> = BTreeMap::new();
    for ((from, to), label) in &edges {
        let (Some(&a), Some(&b)) = (visible_of.get(from), visible_of.get(to)) else {
            continue;
        };
        if a == b {
            continue;
        }
        let entry = merged.entry((a, b)).or_insert((label.clone(), 0));
        if entry.0 != *label {
            entry.0 = "several ways".to_owned();
        }
        entry.1 += 1;
    }

    // Highlighting: the code of a function's changed ancestors is its code too.
    let n = drafts.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut inn: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in merged.keys() {
        out[a].push(b);
        inn[b].push(a);
    }
    let reach = |start: usize, next: &Vec<Vec<usize>>| -> Vec<bool> {
        let mut seen = vec![false; n];
        seen[start] = true;
        let mut queue = VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for &w in &next[v] {
                if !seen[w] {
                    seen[w] = true;
                    queue.push_back(w);
                }
            }
        }
        seen
    };
    let ups: Vec<Vec<bool>> = (0..n).map(|v| reach(v, &inn)).collect();
    for v in 0..n {
        if drafts[v].0 >= 2 {
            let inherited: Vec<String> = (0..n)
                .filter(|&u| ups[v][u] && drafts[u].0 == 1)
                .flat_map(|u| drafts[u].1.lines.iter().cloned().collect::<Vec<_>>())
                .collect();
            let lines = &mut drafts[v].1.lines;
            for cell in inherited {
                if lines.len() >= MAX_CELLS_PER_NODE {
                    break;
                }
                lines.insert(cell);
            }
        }
    }

    // Order within layers: hunks as in the fix, then by the mean position of what
    // leads to each node (fewer crossings).
    let mut position: Vec<f64> = vec![0.0; n];
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); last_layer as usize + 1];
    for (v, (layer, _, _)) in drafts.iter().enumerate() {
        rows[*layer as usize].push(v);
    }
    for row in rows.iter_mut() {
        let mean = |v: usize| -> f64 {
            if inn[v].is_empty() {
                f64::MAX
            } else {
                inn[v].iter().map(|&u| position[u]).sum::<f64>() / inn[v].len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize)> = row.iter().map(|&v| (mean(v), v)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *row = keyed.into_iter().map(|(_, v)| v).collect();
        for (i, &v) in row.iter().enumerate() {
            position[v] = i as f64;
        }
    }
    let mut xy: Vec<(u32, u32)> = vec![(0, 0); n];
    let mut height = TOP;
    for (layer, row) in rows.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            let x = layer as u32 * (NODE_W + GAP_X);
            let y = TOP + i as u32 * (NODE_H + GAP_Y);
            xy[v] = (x, y);
            height = height.max(y + NODE_H + GAP_Y);
        }
    }
    let width = (last_layer + 1) * NODE_W + last_layer * GAP_X + 40;

    let edge_list: Vec<GraphEdge> = merged
        .iter()
        .map(|(&(a, b), (label, count))| {
            let (ax, ay) = xy[a];
            let (bx, by) = xy[b];
            let (y1, y2) = (ay + NODE_H / 2, by + NODE_H / 2);
            let d = if bx > ax {
                let (x1, x2) = (ax + NODE_W, bx);
                let mid = (x1 + x2) / 2;
                format!("M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}")
            } else {
                // Within a layer (a folded chain): an arc on the right.
                let x = ax + NODE_W;
                let bend = x + GAP_X / 2;
                format!("M{x} {y1} C{bend} {y1} {bend} {y2} {x} {y2}")
            };
            let label = if *count > 1 && label != "changes" {
                format!("{label} ×{count}")
            } else {
                label.clone()
            };
            GraphEdge {
                from: a as u32,
                to: b as u32,
                label,
                d,
            }
        })
        .collect();
    let downs: Vec<Vec<bool>> = (0..n).map(|v| reach(v, &out)).collect();
    let graph_nodes: Vec<GraphNode> = drafts
        .into_iter()
        .enumerate()
        .map(|(v, (layer, draft, group))| {
            let related: Vec<u32> = (0..n)
                .filter(|&u| ups[v][u] || downs[v][u])
                .map(|u| u as u32)
                .collect();
            let related_edges: Vec<u32> = edge_list
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    let (a, b) = (e.from as usize, e.to as usize);
                    (ups[v][a] && ups[v][b]) || (downs[v][a] && downs[v][b])
                })
                .map(|(i, _)| i as u32)
                .collect();
            let (x, y) = xy[v];
            let detail = draft.marks.iter().cloned().collect::<Vec<_>>().join(" · ");
            let mut title = draft.title.join("\n");
            if title.is_empty() {
                title = draft.label.clone();
            }
            GraphNode {
                kind: draft.kind.unwrap_or(NodeKind::Site),
                layer,
                x,
                y,
                w: NODE_W,
                label: shorten(&draft.label, LABEL_CHARS),
                detail: shorten(&detail, LABEL_CHARS + 6),
                title,
                lines: draft.lines.into_iter().collect(),
                related,
                related_edges,
                group,
            }
        })
        .collect();
    ImpactGraph {
        width,
        height,
        columns: columns_titles
            .into_iter()
            .enumerate()
            .map(|(layer, title)| GraphColumn {
                title,
                x: layer as u32 * (NODE_W + GAP_X),
            })
            .collect(),
        nodes: graph_nodes,
        edges: edge_list,
        groups,
        cannot_replace: report
            .unpatchable
            .iter()
            .map(|u| CannotReplace {
                symbol: u.symbol.clone(),
                object: u.object.clone(),
                why: u.why.clone(),
                resolution: u.resolution.clone(),
            })
            .collect(),
        hidden_by_search,
    }
}

/// The group of `draft` at coarseness `level` (0: finest).
fn group_name(draft: &Draft, hunk: bool, level: usize) -> String {
    if hunk {
        return match level {
            0 => draft.file.clone(),
            1 | 2 => directory(&draft.file, 3 - level),
            _ => "hunks".to_owned(),
        };
    }
    let with_dir = |depth: usize| {
        let dir = directory(&draft.file, depth);
        if dir.is_empty() {
            draft.object.clone()
        } else {
            format!("{} · {dir}", draft.object)
        }
    };
    match level {
        0 => with_dir(2),
        1 => with_dir(1),
        2 => draft.object.clone(),
        _ if draft.object == "vmlinux" => "vmlinux".to_owned(),
        _ => "modules".to_owned(),
    }
}

fn column_titles(last_layer: u32) -> Vec<String> {
    (0..=last_layer)
        .map(|layer| match layer {
            0 => "Hunks".to_owned(),
            1 => "Changed functions".to_owned(),
            l if l == last_layer => "Replaced, or cannot be".to_owned(),
            2 => "Where the code went".to_owned(),
            _ => "…and then".to_owned(),
        })
        .collect()
}

/// A pitfall of a report, on the line of the diff (as submitted) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedPitfall<'a> {
    /// The file's index in the diff (the `f{n}` of the cells' keys).
    pub file: usize,
    /// The line's old-side number, if it has one.
    pub old: Option<u32>,
    /// Its new-side number, if it has one.
    pub new: Option<u32>,
    /// The pitfall.
    pub pitfall: &'a Pitfall,
}

/// Where each of `report`'s pitfalls is in `patch`, the diff as submitted. A report on
/// the target's source numbers its lines there (each hunk moved by its offset, new-side
/// lines also by what the hunks before it that did not apply would have added); a
/// pitfall names a changed line by its new side when it has one (as
/// [`analyzer::pitfalls::check`] does), a shift in line numbers by its hunk's first old
/// line. A pitfall no line of the diff matches is left out.
pub fn place_pitfalls<'a>(report: &'a ImpactReport, patch: &Patch) -> Vec<PlacedPitfall<'a>> {
    let report_hunk: HashMap<(&str, u32), &analyzer::impact::HunkReport> = report
        .hunks
        .iter()
        .map(|h| ((h.path.as_str(), h.hunk), h))
        .collect();
    // Per file path: the report's line numbers to the diff's lines, changed lines first
    // (a pitfall names a changed line when one has the number), and each hunk's first
    // old line to its first line (a shift in line numbers).
    type Line<'p> = &'p analyzer::patch::HunkLine;
    #[derive(Default)]
    struct Lines<'p> {
        index: usize,
        changed: HashMap<i64, Line<'p>>,
        any: HashMap<i64, Line<'p>>,
        hunk_starts: HashMap<i64, Line<'p>>,
    }
    let mut files: HashMap<&str, Lines<'_>> = HashMap::new();
    for (index, file) in patch.files.iter().enumerate() {
        let hunk_path = file.old_path.as_deref().unwrap_or(file.path());
        let lines = files.entry(file.path()).or_insert_with(|| Lines {
            index,
            ..Lines::default()
        });
        let (mut growth_fix, mut growth_target) = (0i64, 0i64);
        for (number, hunk) in (1u32..).zip(&file.hunks) {
            let grows = i64::from(hunk.new_lines) - i64::from(hunk.old_lines);
            let offsets = match report.basis {
                LineBasis::AsWritten => Some((0, 0)),
                LineBasis::TargetSource => {
                    let found = report_hunk.get(&(hunk_path, number));
                    let offset = match found.map(|h| (&h.outcome, h.analysed)) {
                        Some((HunkOutcome::Placed(HunkState::Applied { offset, .. }), true)) => {
                            Some(*offset)
                        }
                        // A new file, or a file the report has no hunk of: as written.
                        Some((_, true)) | None => Some(0),
                        Some((_, false)) => None,
                    };
                    offset.map(|offset| {
                        let new_offset = offset + growth_target - growth_fix;
                        growth_target += grows;
                        (offset, new_offset)
                    })
                }
            };
            growth_fix += grows;
            let Some((old_offset, new_offset)) = offsets else {
                continue;
            };
            if let Some(first) = hunk.lines.first() {
                lines
                    .hunk_starts
                    .entry(i64::from(hunk.old_start) + old_offset)
                    .or_insert(first);
            }
            for line in &hunk.lines {
                let Some(mapped) = line
                    .new_line
                    .map(|n| i64::from(n) + new_offset)
                    .or(line.old_line.map(|o| i64::from(o) + old_offset))
                else {
                    continue;
                };
                if line.kind != LineKind::Context {
                    lines.changed.entry(mapped).or_insert(line);
                }
                lines.any.entry(mapped).or_insert(line);
            }
        }
    }
    let mut placed = Vec::new();
    for pitfall in &report.pitfalls {
        let Some(lines) = files.get(pitfall.path.as_str()) else {
            continue;
        };
        let at = i64::from(pitfall.line);
        let line = lines
            .changed
            .get(&at)
            .or_else(|| lines.any.get(&at))
            .or_else(|| lines.hunk_starts.get(&at));
        if let Some(line) = line {
            placed.push(PlacedPitfall {
                file: lines.index,
                old: line.old_line,
                new: line.new_line,
                pitfall,
            });
        }
    }
    placed
}
