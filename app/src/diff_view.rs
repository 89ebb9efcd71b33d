//! The diff of one revision, side by side or unified.
//!
//! Each line arrives as HTML the server already highlighted and escaped; it is placed with
//! `inner_html`, which hydration leaves untouched, so hydrating a long diff costs one node
//! per table cell rather than one per token. Switching layout re-renders in the browser
//! from the same data, without asking the server.

use crate::model::{side_by_side, FileView, HunkView, LineKind, LineView, PitfallView};
use leptos::prelude::*;

fn code_class(kind: LineKind) -> &'static str {
    match kind {
        LineKind::Context => "code ctx",
        LineKind::Removed => "code del",
        LineKind::Added => "code add",
    }
}

fn number(n: Option<u32>) -> String {
    n.map(|n| n.to_string()).unwrap_or_default()
}

fn change_label(change: &str) -> &'static str {
    match change {
        "added" => "A",
        "deleted" => "D",
        "renamed" => "R",
        "copied" => "C",
        _ => "M",
    }
}

/// The files of one revision with a layout switch.
#[component]
pub fn DiffView(
    files: Vec<FileView>,
    files_changed: usize,
    added: usize,
    removed: usize,
    /// The analyses' pitfalls, shown under their lines.
    #[prop(optional)]
    pitfalls: Vec<PitfallView>,
    /// Where a reviewer marks a pitfall considered: (patch, revision), when the user may.
    #[prop(default = None)]
    consider: Option<(i64, i64)>,
) -> impl IntoView {
    let (unified, set_unified) = signal(false);
    let files = StoredValue::new(files);
    let notes = StoredValue::new(Notes::new(pitfalls, consider));
    let index = files.with_value(|files| {
        files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let href = format!("#{}", f.anchor(i));
                view! {
                    <li>
                        <span class=format!("chg chg-{}", f.change)>{change_label(&f.change)}</span>
                        <a href=href class="mono">{f.path().to_owned()}</a>
                        <span class="stat">
                            <span class="plus">"+" {f.added}</span>
                            " "
                            <span class="minus">"−" {f.removed}</span>
                        </span>
                    </li>
                }
            })
            .collect_view()
    });
    view! {
        <section class="diff-view">
            <div class="diff-toolbar">
                <span class="summary">
                    {files_changed}
                    {if files_changed == 1 { " file, " } else { " files, " }}
                    <span class="plus">"+" {added}</span>
                    " "
                    <span class="minus">"−" {removed}</span>
                </span>
                <div class="segmented" role="group" aria-label="Diff layout">
                    <button
                        type="button"
                        id="layout-split"
                        class:on=move || !unified.get()
                        aria-pressed=move || (!unified.get()).to_string()
                        on:click=move |_| set_unified.set(false)
                    >
                        "Side by side"
                    </button>
                    <button
                        type="button"
                        id="layout-unified"
                        class:on=move || unified.get()
                        aria-pressed=move || unified.get().to_string()
                        on:click=move |_| set_unified.set(true)
                    >
                        "Unified"
                    </button>
                </div>
            </div>
            <ul class="file-index">{index}</ul>
            {move || {
                let unified = unified.get();
                files
                    .with_value(|files| {
                        notes.with_value(|notes| {
                            files
                                .iter()
                                .enumerate()
                                .map(|(i, file)| file_block(file, i, unified, notes))
                                .collect_view()
                        })
                    })
            }}
        </section>
    }
    .into_any()
}

/// What is shown under the diff's lines besides the code.
struct Notes {
    pitfalls: Vec<PitfallView>,
    /// (file, old line, new line) to the pitfalls there: one lookup per line.
    at: std::collections::HashMap<(usize, Option<u32>, Option<u32>), Vec<usize>>,
    consider: Option<(i64, i64)>,
}

impl Notes {
    fn new(pitfalls: Vec<PitfallView>, consider: Option<(i64, i64)>) -> Notes {
        let mut at: std::collections::HashMap<_, Vec<usize>> = std::collections::HashMap::new();
        for (i, p) in pitfalls.iter().enumerate() {
            at.entry((p.file, p.old, p.new)).or_default().push(i);
        }
        Notes {
            pitfalls,
            at,
            consider,
        }
    }

    /// The rows under `lines` (one table row's) of file `index` (`colspan` cells wide).
    fn rows(&self, index: usize, lines: &[&LineView], colspan: &'static str) -> AnyView {
        let here: Vec<&PitfallView> = lines
            .iter()
            .filter_map(|l| self.at.get(&(index, l.old, l.new)))
            .flatten()
            .map(|&i| &self.pitfalls[i])
            .collect();
        if here.is_empty() {
            return ().into_any();
        }
        here.into_iter()
            .map(|p| pitfall_row(p, colspan, self.consider))
            .collect_view()
            .into_any()
    }
}

/// One pitfall under its line: what and why in its summary, the details, the guide's
/// section, and who considered it (with a form to say so).
fn pitfall_row(
    p: &PitfallView,
    colspan: &'static str,
    consider: Option<(i64, i64)>,
) -> impl IntoView {
    let considered = p
        .considered
        .iter()
        .map(|c| {
            view! {
                <li>
                    <strong>{c.by.clone()}</strong>
                    " considered it: "
                    {c.comment.clone()}
                </li>
            }
        })
        .collect_view();
    let form = consider.map(|(patch, revision)| {
        let (side, line) = p.anchor_line();
        view! {
            <form method="post" action=format!("/patches/{patch}/comments") class="consider">
                <input type="hidden" name="revision" value=revision.to_string()/>
                <input type="hidden" name="path" value=p.path.clone()/>
                <input type="hidden" name="side" value=side/>
                <input type="hidden" name="line" value=line.to_string()/>
                <input type="hidden" name="pitfall" value=p.kind.clone()/>
                <label>
                    "Considered: how is it handled?"
                    <textarea name="body" rows="2" required></textarea>
                </label>
                <button type="submit">"Mark considered"</button>
            </form>
        }
    });
    let done = !p.considered.is_empty();
    view! {
        <tr class="pitfall-row" id=p.anchor.clone()>
            <td colspan=colspan>
                <details class="pitfall" class:considered=done data-kind=p.kind.clone()>
                    <summary>
                        <span class="pitfall-mark" aria-hidden="true">"!"</span>
                        <strong>{p.guide_title.clone()}</strong>
                        ": "
                        {p.why.clone()}
                        {done.then(|| view! { <span class="tag">"considered"</span> })}
                    </summary>
                    <p class="pitfall-detail">
                        {p.detail.clone()}
                        <span class="dim">" · found on " {p.targets.join(", ")}</span>
                    </p>
                    <p>
                        <a href=p.guide_url.clone() rel="noopener noreferrer" target="_blank">
                            "kpatch patch author guide: " {p.guide_title.clone()}
                        </a>
                    </p>
                    <ul class="considered">{considered}</ul>
                    {form}
                </details>
            </td>
        </tr>
    }
    .into_any()
}

fn file_block(file: &FileView, index: usize, unified: bool, notes: &Notes) -> impl IntoView {
    let body = if file.hunks.is_empty() {
        view! { <p class="no-hunks">"No content change."</p> }.into_any()
    } else if unified {
        unified_table(&file.hunks, index, notes).into_any()
    } else {
        split_table(&file.hunks, index, notes).into_any()
    };
    let renamed_from = match (&file.old_path, &file.new_path) {
        (Some(old), Some(new)) if old != new => {
            Some(view! { <span class="dim">{old.clone()} " → "</span> })
        }
        _ => None,
    };
    view! {
        <section class="file" id=file.anchor(index) data-syntax=file.syntax.clone()>
            <header class="file-head">
                <span class=format!("chg chg-{}", file.change)>{change_label(&file.change)}</span>
                <span class="path mono">{renamed_from} {file.path().to_owned()}</span>
                {file.mode_change.clone().map(|m| view! { <span class="mode mono">{m}</span> })}
                <span class="stat">
                    <span class="plus">"+" {file.added}</span>
                    " "
                    <span class="minus">"−" {file.removed}</span>
                </span>
            </header>
            {body}
        </section>
    }
}

fn hunk_header(hunk: &HunkView, colspan: &'static str) -> impl IntoView {
    view! {
        <tr class="hunk">
            <td colspan=colspan>
                <span class="range">{hunk.range.clone()}</span>
                " "
                <span class="section">{hunk.section.clone()}</span>
            </td>
        </tr>
    }
}

/// The `data-k` key of a code cell: file `index`, old (`o`) or new (`n`) side, line.
fn cell_key(index: usize, side: char, line: Option<u32>) -> Option<String> {
    line.map(|n| format!("f{index}-{side}{n}"))
}

fn split_table(hunks: &[HunkView], index: usize, notes: &Notes) -> impl IntoView {
    view! {
        <table class="diff split">
            <colgroup>
                <col class="ln"/>
                <col class="code"/>
                <col class="ln"/>
                <col class="code"/>
            </colgroup>
            {hunks
                .iter()
                .map(|hunk| {
                    let kinds: Vec<LineKind> = hunk.lines.iter().map(|l| l.kind).collect();
                    let rows = side_by_side(&kinds)
                        .into_iter()
                        .map(|row| {
                            let left = row.left.map(|i| &hunk.lines[i]);
                            let right = row.right.map(|i| &hunk.lines[i]);
                            let lines: Vec<&LineView> = match (row.left, row.right) {
                                (Some(l), Some(r)) if l == r => vec![&hunk.lines[l]],
                                _ => left.into_iter().chain(right).collect(),
                            };
                            view! {
                                <tr>
                                    {half(left, index, 'o', |l| l.old)}
                                    {half(right, index, 'n', |l| l.new)}
                                </tr>
                                {notes.rows(index, &lines, "4")}
                            }
                        })
                        .collect_view();
                    view! { <tbody>{hunk_header(hunk, "4")} {rows}</tbody> }
                })
                .collect_view()}
        </table>
    }
}

fn half(
    line: Option<&LineView>,
    index: usize,
    side: char,
    number_of: fn(&LineView) -> Option<u32>,
) -> impl IntoView {
    match line {
        Some(line) => view! {
            <td class="ln" data-ln=number(number_of(line))></td>
            <td
                class=code_class(line.kind)
                data-k=cell_key(index, side, number_of(line))
                inner_html=line.html.clone()
            ></td>
        }
        .into_any(),
        None => view! {
            <td class="ln none"></td>
            <td class="code none"></td>
        }
        .into_any(),
    }
}

fn unified_table(hunks: &[HunkView], index: usize, notes: &Notes) -> impl IntoView {
    view! {
        <table class="diff unified">
            <colgroup>
                <col class="ln"/>
                <col class="ln"/>
                <col class="code"/>
            </colgroup>
            {hunks
                .iter()
                .map(|hunk| {
                    let rows = hunk
                        .lines
                        .iter()
                        .map(|line| {
                            // An added line is keyed by its new side, the others by the old.
                            let key = match line.kind {
                                LineKind::Added => cell_key(index, 'n', line.new),
                                _ => cell_key(index, 'o', line.old),
                            };
                            view! {
                                <tr>
                                    <td class="ln" data-ln=number(line.old)></td>
                                    <td class="ln" data-ln=number(line.new)></td>
                                    <td
                                        class=code_class(line.kind)
                                        data-k=key
                                        inner_html=line.html.clone()
                                    ></td>
                                </tr>
                                {notes.rows(index, &[line], "3")}
                            }
                        })
                        .collect_view();
                    view! { <tbody>{hunk_header(hunk, "3")} {rows}</tbody> }
                })
                .collect_view()}
        </table>
    }
}
