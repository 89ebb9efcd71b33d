//! The impact panel beside the diff: the revision's analysis on each target (a matrix,
//! with live progress while an analysis runs) and the layered graph of what the compiler
//! did with the fix on one target.
//!
//! The graph is SVG the server draws (readable without JavaScript). Once hydrated,
//! hovering or focusing a node lights the paths through it and the diff lines its code
//! came from; clicking (or Enter on) a node keeps that lit until clicked again. The diff's
//! code cells carry `data-k` keys (`f{file}-o{old}`, `f{file}-n{new}`) the nodes name.

use crate::model::{AppError, GraphNode, ImpactGraph, ImpactView, TargetImpact};
use crate::pages::PageRefresh;
use crate::targets_view::JobProgress;
use leptos::prelude::*;

/// The impact panel of one revision of patch `patch`, from `impact`, which the patch page
/// loads (keyed by the revision, `?target=` and `?q=`).
#[component]
pub fn ImpactPanel(patch: i64, impact: Resource<Result<ImpactView, AppError>>) -> impl IntoView {
    // An analysis the page follows finished: the whole page loads again (its pitfalls and
    // eligibility come from the analyses), the panel with it.
    let page = use_context::<PageRefresh>();
    let on_finished = Callback::new(move |()| {
        if let Some(PageRefresh(page)) = page {
            page.update(|n| *n += 1);
        }
    });
    view! {
        <section class="impact" id="impact" aria-labelledby="impact-title">
            <h2 id="impact-title">"Impact"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading the analyses…"</p> }>
                {move || Suspend::new(async move {
                    match impact.await {
                        Ok(view) => view! { <ImpactBody view patch on_finished/> }.into_any(),
                        Err(e) => view! { <p class="alert" role="alert">{e.to_string()}</p> }
                            .into_any(),
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

#[component]
fn ImpactBody(view: ImpactView, patch: i64, on_finished: Callback<()>) -> impl IntoView {
    let revision = view.revision;
    let selected = view.selected.clone();
    let several = view.targets.len() > 1;
    let any = !view.targets.is_empty();
    let rows = view
        .targets
        .into_iter()
        .map(|row| {
            let current = selected.as_deref() == Some(row.target.as_str());
            matrix_row(row, patch, revision, current, on_finished)
        })
        .collect_view();
    let matrix = view! {
        <table class="impact-matrix">
            <caption class="visually-hidden">"The revision on each target"</caption>
            <thead>
                <tr>
                    <th scope="col">"Target"</th>
                    <th scope="col">"State"</th>
                    <th scope="col" class="num" title="Functions to replace">"Replace"</th>
                    <th scope="col" class="num" title="Functions that cannot be replaced">
                        "Cannot"
                    </th>
                    <th scope="col" class="num">"Pitfalls"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    };
    let body = match (view.graph, view.no_graph) {
        (Some(graph), _) => {
            let target = selected.clone().unwrap_or_default();
            view! {
                <GraphSearch revision target=target.clone() query=view.query.clone()/>
                <Graph graph target/>
            }
            .into_any()
        }
        (None, Some(why)) => {
            let registration = view
                .registration
                .clone()
                .map(|job| view! { <JobProgress job on_finished/> });
            view! {
                <p class="no-graph" id="no-graph">{why}</p>
                {registration}
            }
            .into_any()
        }
        (None, None) => ().into_any(),
    };
    view! {
        {any.then_some(matrix)}
        {several.then(|| view! { <p class="hint">"Pick a target to see its graph."</p> })}
        {body}
    }
    .into_any()
}

fn matrix_row(
    row: TargetImpact,
    patch: i64,
    revision: i64,
    current: bool,
    on_finished: Callback<()>,
) -> impl IntoView {
    let href = format!(
        "/patches/{patch}?rev={revision}&target={}#impact",
        encode(&row.target)
    );
    let state = match row.job.clone() {
        Some(job) if job.is_active() || job.state == "failed" => {
            view! { <JobProgress job on_finished/> }.into_any()
        }
        _ => view! {
            <span class=format!("outcome outcome-{}", row.state) title=row.summary.clone()>
                {outcome_label(&row.state)}
            </span>
        }
        .into_any(),
    };
    let differences = (!row.differences.is_empty()).then(|| {
        let items = row
            .differences
            .iter()
            .map(|d| view! { <li>{d.clone()}</li> })
            .collect_view();
        view! {
            <tr class="differences">
                <td colspan="5">
                    <ul>{items}</ul>
                </td>
            </tr>
        }
    });
    let not_applied = (row.hunks_not_applied > 0).then(|| {
        view! {
            <span class="not-applied">
                {format!(" · {} hunk(s) do not apply", row.hunks_not_applied)}
            </span>
        }
    });
    view! {
        <tr class:current=current data-target=row.target.clone() data-state=row.state.clone()>
            <th scope="row">
                <a href=href class="mono" aria-current=current.then_some("true")>
                    {row.target.clone()}
                </a>
            </th>
            <td>{state} {not_applied}</td>
            <td class="num" data-count="replace">{row.replace}</td>
            <td class="num" data-count="cannot">{row.cannot_replace}</td>
            <td class="num" data-count="pitfalls">{row.pitfalls}</td>
        </tr>
        {differences}
    }
    .into_any()
}

fn outcome_label(state: &str) -> &'static str {
    match state {
        "analysed" => "analysed",
        "no_code" => "no code of this build changes",
        "not_applicable" => "does not apply",
        "incomplete" => "incomplete",
        "failed" => "failed",
        "queued" => "queued",
        "running" => "running",
        "cancelled" => "cancelled",
        _ => "not analysed yet",
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The search over the graph's functions: a plain GET form (works without JavaScript).
#[component]
fn GraphSearch(revision: i64, target: String, query: String) -> impl IntoView {
    view! {
        <form class="graph-search" method="get" role="search" action="#impact">
            <input type="hidden" name="rev" value=revision.to_string()/>
            <input type="hidden" name="target" value=target/>
            <label>
                "Find a function "
                <input type="search" name="q" value=query placeholder="e.g. ext4_"/>
            </label>
            <button type="submit">"Find"</button>
        </form>
    }
    .into_any()
}

#[component]
fn Graph(graph: ImpactGraph, target: String) -> impl IntoView {
    // The node hovered or focused, and the one clicked (kept lit).
    let hovered = RwSignal::new(None::<u32>);
    let pinned = RwSignal::new(None::<u32>);
    let active = Memo::new(move |_| hovered.get().or(pinned.get()));
    let related: StoredValue<Vec<Vec<u32>>> =
        StoredValue::new(graph.nodes.iter().map(|n| n.related.clone()).collect());
    let related_edges: StoredValue<Vec<Vec<u32>>> = StoredValue::new(
        graph
            .nodes
            .iter()
            .map(|n| n.related_edges.clone())
            .collect(),
    );
    #[cfg(all(feature = "hydrate", target_arch = "wasm32"))]
    {
        let lines: Vec<Vec<String>> = graph.nodes.iter().map(|n| n.lines.clone()).collect();
        light_the_diff(active, pinned, lines);
    }
    let node_lit = move |i: u32| {
        active
            .get()
            .is_some_and(|a| related.with_value(|r| r[a as usize].contains(&i)))
    };
    let edge_lit = move |i: u32| {
        active
            .get()
            .is_some_and(|a| related_edges.with_value(|r| r[a as usize].contains(&i)))
    };
    let dimmed = move || active.get().is_some();
    let columns = graph
        .columns
        .iter()
        .map(|c| {
            view! {
                <text class="column" x=c.x + 2 y="14">
                    {c.title.clone()}
                </text>
            }
        })
        .collect_view();
    let edges = graph
        .edges
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let i = i as u32;
            view! {
                <path class="edge" class:lit=move || edge_lit(i) d=e.d.clone()>
                    <title>{e.label.clone()}</title>
                </path>
            }
        })
        .collect_view();
    let nodes = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| graph_node(i as u32, node, node_lit, hovered, pinned))
        .collect_view();
    let groups = (!graph.groups.is_empty()).then(|| {
        let searching = graph.groups.iter().any(|g| g.members.len() < g.total);
        let items = graph
            .groups
            .iter()
            .map(|group| {
                let members = group
                    .members
                    .iter()
                    .map(|m| {
                        view! {
                            <li>
                                <span class="mono">{m.name.clone()}</span>
                                <span class="why">{m.why.clone()}</span>
                            </li>
                        }
                    })
                    .collect_view();
                let open = searching && !group.members.is_empty();
                view! {
                    <details class="graph-group" open=open>
                        <summary>
                            <span class="dim">{group.layer.clone()} ": "</span>
                            <span class="mono">{group.name.clone()}</span>
                            {format!(
                                " — {} of {} function(s)",
                                group.members.len(),
                                group.total,
                            )}
                        </summary>
                        <ul>{members}</ul>
                    </details>
                }
            })
            .collect_view();
        view! {
            <div class="graph-groups">
                <h3>"Grouped functions"</h3>
                {items}
            </div>
        }
    });
    let hidden = (graph.hidden_by_search > 0)
        .then(|| view! { <p class="hint">{format!("{} function(s) do not match the search.", graph.hidden_by_search)}</p> });
    let cannot = (!graph.cannot_replace.is_empty()).then(|| {
        let items = graph
            .cannot_replace
            .iter()
            .map(|c| {
                view! {
                    <li>
                        <span class="mono">{c.symbol.clone()}</span>
                        <span class="dim">" (" {c.object.clone()} ")"</span>
                        ": "
                        {c.why.clone()}
                        "; "
                        <strong>{c.resolution.clone()}</strong>
                    </li>
                }
            })
            .collect_view();
        view! {
            <div class="cannot-replace">
                <h3>"Cannot be replaced"</h3>
                <ul>{items}</ul>
            </div>
        }
    });
    let label = format!("Impact graph on {target}");
    let view_box = format!("0 0 {} {}", graph.width, graph.height);
    view! {
        <div class="graph-scroll">
            <svg
                class="impact-graph"
                class:dimmed=dimmed
                role="group"
                aria-label=label
                viewBox=view_box
                width=graph.width.to_string()
                height=graph.height.to_string()
            >
                {columns}
                <g class="edges">{edges}</g>
                <g class="nodes">{nodes}</g>
            </svg>
        </div>
        {hidden}
        {cannot}
        {groups}
    }
    .into_any()
}

fn graph_node(
    i: u32,
    node: &GraphNode,
    node_lit: impl Fn(u32) -> bool + Copy + Send + Sync + 'static,
    hovered: RwSignal<Option<u32>>,
    pinned: RwSignal<Option<u32>>,
) -> impl IntoView {
    let class = format!("node {}", node.kind.class());
    let transform = format!("translate({} {})", node.x, node.y);
    let toggle = move || pinned.update(|p| *p = if *p == Some(i) { None } else { Some(i) });
    let label = format!("{}: {}", node.label, node.title);
    let pressed = move || (pinned.get() == Some(i)).to_string();
    let group = node.group;
    view! {
        <g
            class=class
            class:lit=move || node_lit(i)
            transform=transform
            tabindex="0"
            role="button"
            aria-label=label
            aria-pressed=pressed
            data-node=i
            data-group=group.map(|g| g.to_string())
            on:mouseenter=move |_| hovered.set(Some(i))
            on:mouseleave=move |_| hovered.set(None)
            on:focus=move |_| hovered.set(Some(i))
            on:blur=move |_| hovered.set(None)
            on:click=move |_| toggle()
            on:keydown=move |e| {
                let key = e.key();
                if key == "Enter" || key == " " {
                    e.prevent_default();
                    toggle();
                }
            }
        >
            <title>{node.title.clone()}</title>
            <rect width=node.w.to_string() height="38" rx="5"></rect>
            <text class="label" x="8" y="16">
                {node.label.clone()}
            </text>
            <text class="detail" x="8" y="31">
                {node.detail.clone()}
            </text>
        </g>
    }
    .into_any()
}

/// Lights the diff cells of the active node (and scrolls a clicked node's first cell into
/// view): class `impact-lit` on the cells whose `data-k` the node names.
#[cfg(all(feature = "hydrate", target_arch = "wasm32"))]
fn light_the_diff(
    active: Memo<Option<u32>>,
    pinned: RwSignal<Option<u32>>,
    lines: Vec<Vec<String>>,
) {
    let lit: StoredValue<Vec<web_sys::Element>> = StoredValue::new(Vec::new());
    Effect::new(move |_| {
        let now = active.get();
        let Some(document) = web_sys::window().and_then(|w| w.document()) else {
            return;
        };
        lit.update_value(|cells| {
            for cell in cells.drain(..) {
                let _ = cell.class_list().remove_1("impact-lit");
            }
        });
        let Some(node) = now else { return };
        let mut found = Vec::new();
        for key in lines.get(node as usize).into_iter().flatten() {
            // Keys are `f{n}-o{n}` / `f{n}-n{n}`: nothing to escape in a selector.
            let Ok(cells) = document.query_selector_all(&format!("[data-k=\"{key}\"]")) else {
                continue;
            };
            for index in 0..cells.length() {
                if let Some(cell) = cells.item(index).and_then(|n| {
                    leptos::wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(n).ok()
                }) {
                    let _ = cell.class_list().add_1("impact-lit");
                    found.push(cell);
                }
            }
        }
        if pinned.get_untracked() == Some(node) {
            if let Some(first) = found.first() {
                first.scroll_into_view_with_bool(false);
            }
        }
        lit.set_value(found);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            encode("6.1.0-56-cloud amd64&x"),
            "6.1.0-56-cloud%20amd64%26x"
        );
    }
}
