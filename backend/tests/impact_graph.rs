//! The impact graph drawn from real analyses of the gcc-built fixtures: an IPA-SRA clone
//! whose callers are replaced, a header inline reaching its callers through a nested
//! chain, a hunk that does not apply, and a fan-out grouped by directory.

#[path = "../../analyzer/tests/common/mod.rs"]
mod fixtures;

use analyzer::impact::{analyze, ImpactReport, Replacement, Step};
use analyzer::index::{KernelIndex, ObjectIndex};
use analyzer::patch::{self, Patch};
use graftbench::impact_graph::{build, GROUP_OVER};
use graftbench_app::model::{ImpactGraph, NodeKind};
use std::sync::OnceLock;

fn index() -> &'static KernelIndex {
    static INDEX: OnceLock<KernelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let image = fixtures::Build::compile(5).vmlinux();
        KernelIndex {
            objects: vec![ObjectIndex::build("vmlinux", &image, &|_| {}).expect("index")],
        }
    })
}

/// A fix replacing line `line` of fixture `file` (the diff's first file, `f0`).
fn fix(file: &str, line: u32) -> Patch {
    let path = format!("analyzer/tests/fixtures/{file}");
    let text = format!("--- a/{path}\n+++ b/{path}\n@@ -{line},1 +{line},1 @@\n-old\n+new\n");
    patch::parse(text.as_bytes()).expect("diff")
}

fn node<'g>(graph: &'g ImpactGraph, label: &str) -> (u32, &'g graftbench_app::model::GraphNode) {
    graph
        .nodes
        .iter()
        .enumerate()
        .find(|(_, n)| n.label == label)
        .map(|(i, n)| (i as u32, n))
        .unwrap_or_else(|| {
            let labels: Vec<&str> = graph.nodes.iter().map(|n| n.label.as_str()).collect();
            panic!("no node {label}: {labels:?}")
        })
}

/// (from label, to label, edge label) for every edge.
fn edges(graph: &ImpactGraph) -> Vec<(String, String, String)> {
    graph
        .edges
        .iter()
        .map(|e| {
            (
                graph.nodes[e.from as usize].label.clone(),
                graph.nodes[e.to as usize].label.clone(),
                e.label.clone(),
            )
        })
        .collect()
}

#[test]
fn an_isra_clone_is_drawn_with_its_abi_change_and_the_caller_replaced_instead() {
    let patch = fix("clones.c", 12);
    let report = analyze(&patch, index()).expect("analysis");
    let graph = build(&report, &patch, "");
    let (hunk, hunk_node) = node(&graph, "clones.c hunk 1");
    let (changed, changed_node) = node(&graph, "req_len()");
    let (clone, clone_node) = node(&graph, "req_len.isra.0()");
    let (caller, caller_node) = node(&graph, "use_req()");
    assert_eq!(hunk_node.kind, NodeKind::Hunk);
    assert_eq!(changed_node.kind, NodeKind::Changed);
    assert_eq!(clone_node.kind, NodeKind::Blocked);
    assert!(clone_node.detail.contains("ABI changed"), "{clone_node:?}");
    assert_eq!(caller_node.kind, NodeKind::Replace);
    // Layered left to right: the clone is on the way, the caller at the end.
    assert!(hunk_node.x < changed_node.x && changed_node.x < clone_node.x);
    assert!(clone_node.x < caller_node.x);
    assert_eq!(
        edges(&graph),
        [
            (
                "clones.c hunk 1".into(),
                "req_len()".into(),
                "changes".into()
            ),
            (
                "req_len()".into(),
                "req_len.isra.0()".into(),
                "clone, ABI changed".into()
            ),
            (
                "req_len.isra.0()".into(),
                "use_req()".into(),
                "calls".into()
            ),
        ]
    );
    // Hovering the caller lights the whole path and the fix's line on both sides.
    let mut related = caller_node.related.clone();
    related.sort();
    assert_eq!(related, {
        let mut all = vec![hunk, changed, clone, caller];
        all.sort();
        all
    });
    assert_eq!(caller_node.related_edges.len(), 3);
    assert_eq!(caller_node.lines, ["f0-n12", "f0-o12"]);
    assert_eq!(graph.cannot_replace.len(), 1);
    assert_eq!(
        graph.cannot_replace[0].resolution,
        "its callers are replaced instead"
    );
}

#[test]
fn a_header_inline_reaches_its_callers_and_a_nested_chain_is_drawn_as_a_chain() {
    let patch = fix("inlines.h", 8);
    let report = analyze(&patch, index()).expect("analysis");
    let graph = build(&report, &patch, "");
    let all = edges(&graph);
    for caller in ["count_a()", "count_b()", "count_c()"] {
        assert!(
            all.iter().any(|(from, to, label)| from == "bump()"
                && to == caller
                && label.starts_with("inlined at")),
            "{caller}: {all:?}"
        );
    }
    // bump() in bump_pair() in pair_a(): two steps.
    assert!(all.contains(&(
        "bump()".into(),
        "bump_pair()".into(),
        "inlined at inlines.h:14".into()
    )));
    assert!(all.contains(&("bump_pair()".into(), "pair_a()".into(), "inlined".into())));
    assert_eq!(node(&graph, "bump_pair()").1.kind, NodeKind::Site);
    assert_eq!(node(&graph, "pair_a()").1.kind, NodeKind::Replace);
    // A node on the way lights only the paths through it.
    let (_, site) = node(&graph, "bump_pair()");
    let (count_a, _) = node(&graph, "count_a()");
    assert!(!site.related.contains(&count_a));
}

#[test]
fn a_hunk_that_does_not_match_the_build_is_drawn_apart_and_reaches_nothing() {
    // The second hunk's heading names a function the build has elsewhere.
    let text = "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
                @@ -12,1 +12,1 @@ static noinline int req_len(struct req *r)\n-old\n+new\n\
                @@ -29,1 +29,1 @@ static noinline int req_len(struct req *r)\n-old\n+new\n";
    let patch = patch::parse(text.as_bytes()).expect("diff");
    let report = analyze(&patch, index()).expect("analysis");
    let graph = build(&report, &patch, "");
    let (second, second_node) = node(&graph, "clones.c hunk 2");
    assert_eq!(
        second_node.kind,
        NodeKind::HunkNotApplied,
        "{:?}",
        report.hunks
    );
    assert_eq!(second_node.related, [second]);
    assert_eq!(second_node.lines, ["f0-n29", "f0-o29"]);
    // The first hunk's graph is whole, and nothing of the second's lines is in it.
    assert_eq!(node(&graph, "use_req()").1.kind, NodeKind::Replace);
    assert!(graph.nodes.iter().all(|n| n.label != "scaled()"));
}

/// A report replacing `count` functions in `dirs` directories, as a header change in
/// a kernel would: the graph groups them, collapsed, and the search filters the lists.
#[test]
fn a_thousand_functions_are_grouped_by_object_and_directory_and_searchable() {
    let patch = fix("inlines.h", 8);
    let mut report: ImpactReport = analyze(&patch, index()).expect("analysis");
    let template = report.replace[0].clone();
    let dirs = [
        "fs/ext4",
        "fs/xfs",
        "net/ipv4",
        "drivers/net/ethernet/intel",
        "mm",
    ];
    report.replace = (0..1000)
        .map(|i| {
            let symbol = format!("caller_{i}");
            let dir = dirs[i % dirs.len()];
            Replacement {
                symbol: symbol.clone(),
                file: format!("/build/linux-6.1/{dir}/file{i}.c"),
                path: vec![
                    template.path[0].clone(),
                    Step::Inlined {
                        function: "bump".into(),
                        into: symbol.clone(),
                        file: format!("file{i}.c"),
                        line: 3,
                        through: vec![],
                    },
                    Step::Entry { symbol },
                ],
                ..template.clone()
            }
        })
        .collect();
    let graph = build(&report, &patch, "");
    assert!(graph.nodes.len() < 3 * GROUP_OVER, "{}", graph.nodes.len());
    let groups: Vec<(&str, usize)> = graph
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.total))
        .collect();
    assert_eq!(
        groups,
        [
            ("vmlinux · drivers/net", 200),
            ("vmlinux · fs/ext4", 200),
            ("vmlinux · fs/xfs", 200),
            ("vmlinux · mm", 200),
            ("vmlinux · net/ipv4", 200),
        ]
    );
    let (_, ext4) = node(&graph, "vmlinux · fs/ext4");
    assert_eq!(ext4.kind, NodeKind::Group);
    assert!(ext4.detail.contains("200 function(s)"));
    assert_eq!(ext4.lines, ["f0-n8", "f0-o8"]);
    // The search keeps the matching members and says how many it hid.
    let found = build(&report, &patch, "CALLER_99");
    let members: usize = found.groups.iter().map(|g| g.members.len()).sum();
    assert_eq!(members, 11, "caller_99 and caller_990..999");
    assert_eq!(found.hidden_by_search, 1000 - 11);
}

/// A report on the target's source numbers lines there: a pitfall on an added line of a
/// hunk that applies with an offset, after a hunk that does not apply (and would have
/// added two lines), is still placed on its line of the diff as submitted.
#[test]
fn a_pitfall_is_placed_on_its_line_of_the_diff_as_submitted() {
    let text = concat!(
        "--- a/analyzer/tests/fixtures/clones.c\n",
        "+++ b/analyzer/tests/fixtures/clones.c\n",
        "@@ -2,2 +2,4 @@\n",
        " no such line one\n",
        "+added a\n",
        "+added b\n",
        " no such line two\n",
        "@@ -20,3 +22,4 @@ static noinline int req_len(struct req *r)\n",
        " {\n",
        "+\tstatic int calls;\n",
        " \treturn r->len * 3 + 1;\n",
        " }\n",
    );
    let patch = patch::parse(text.as_bytes()).expect("diff");
    let tree = fixtures::fixture_tree();
    let report = analyzer::impact::analyze_on(
        &patch,
        index(),
        Some(analyzer::impact::TargetSource {
            tree: &tree.source,
            index: Some(&tree.index),
            config: None,
        }),
    )
    .expect("analysis");
    let static_local = report
        .pitfalls
        .iter()
        .find(|p| p.kind == analyzer::pitfalls::PitfallKind::StaticLocal)
        .unwrap_or_else(|| panic!("{:?}", report.pitfalls));
    // The target's numbering: req_len's brace is line 11 there, the new line 12.
    assert_eq!(static_local.line, 12);
    let placed = graftbench::impact_graph::place_pitfalls(&report, &patch);
    let found = placed
        .iter()
        .find(|p| p.pitfall.kind == analyzer::pitfalls::PitfallKind::StaticLocal)
        .expect("placed");
    assert_eq!((found.file, found.old, found.new), (0, None, Some(23)));
    // And the graph draws the first hunk apart.
    let graph = build(&report, &patch, "");
    assert_eq!(
        node(&graph, "clones.c hunk 1").1.kind,
        NodeKind::HunkNotApplied
    );
    assert_eq!(node(&graph, "clones.c hunk 2").1.kind, NodeKind::Hunk);
}

/// Thousands of hunks (a 5 MiB diff has room for them) are grouped by file, then by
/// directory: the drawing and the work on it stay bounded.
#[test]
fn thousands_of_hunks_are_grouped_too() {
    use graftbench::impact_graph::MAX_VISIBLE_PER_LAYER;
    let patch = fix("clones.c", 12);
    let mut report = analyze(&patch, index()).expect("analysis");
    let template = report.hunks[0].clone();
    report.hunks = (0..3000u32)
        .map(|i| analyzer::impact::HunkReport {
            path: format!("drivers/net/dev{}/file{}.c", i % 300, i % 600),
            hunk: i / 600 + 1,
            ..template.clone()
        })
        .collect();
    let graph = build(&report, &patch, "");
    let hunks = graph.nodes.iter().filter(|n| n.layer == 0).count();
    assert!(hunks <= MAX_VISIBLE_PER_LAYER, "{hunks}");
    assert!(graph
        .nodes
        .iter()
        .any(|n| n.layer == 0 && n.kind == NodeKind::Group));
    let listed: usize = graph
        .groups
        .iter()
        .filter(|g| g.layer == "Hunks")
        .map(|g| g.total)
        .sum();
    assert_eq!(listed, 3000);
}

/// A block rewriting a function into thousands of lines: each node lights at most
/// MAX_CELLS_PER_NODE cells (the response and the page's work stay bounded).
#[test]
fn a_node_lights_a_bounded_number_of_cells() {
    use graftbench::impact_graph::MAX_CELLS_PER_NODE;
    let mut text = String::from(
        "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
         @@ -10,4 +10,3000 @@\n-static noinline int req_len(struct req *r)\n-{\n\
         -\treturn r->len * 3 + 1;\n-}\n",
    );
    for i in 0..3000 {
        text.push_str(&format!("+\t/* line {i} */\n"));
    }
    let patch = patch::parse(text.as_bytes()).expect("diff");
    let report = analyze(&patch, index()).expect("analysis");
    let graph = build(&report, &patch, "");
    let (_, changed) = node(&graph, "req_len()");
    assert_eq!(changed.lines.len(), MAX_CELLS_PER_NODE);
    assert!(graph
        .nodes
        .iter()
        .all(|n| n.lines.len() <= MAX_CELLS_PER_NODE));
}
