//! The diff of one revision, side by side or unified.
//!
//! Each line arrives as HTML the server already highlighted and escaped; it is placed with
//! `inner_html`, which hydration leaves untouched, so hydrating a long diff costs one node
//! per table cell rather than one per token. Switching layout re-renders in the browser
//! from the same data, without asking the server.

use crate::model::{
    side_by_side, DraftView, FileMark, FileView, HeldBack, HunkView, KnownGap, LineKind, LineView,
    PitfallView, ThreadView,
};
use crate::review_view::{draft_body, replies_to, thread_body};
use leptos::prelude::*;
use std::collections::HashMap;

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
    /// Whether the lines are highlighted (a long revision's are plain for a moment).
    #[prop(default = true)]
    highlighted: bool,
    /// Where the hunks the server held back of a long diff load from: (patch, revision).
    #[prop(default = None)]
    held: Option<(i64, i64)>,
    /// The analyses' pitfalls, shown under their lines.
    #[prop(optional)]
    pitfalls: Vec<PitfallView>,
    /// Where a reviewer marks a pitfall considered: (patch, revision), when the user may.
    #[prop(default = None)]
    consider: Option<(i64, i64)>,
    /// The comment threads on this revision's lines, shown under their lines.
    #[prop(optional)]
    threads: Vec<ThreadView>,
    /// Where a click on a line number starts a comment: (patch, revision), when the user
    /// may comment.
    #[prop(default = None)]
    comment: Option<(i64, i64)>,
    /// The signed-in user's "reviewed" marks, with the patch they are kept on: given when
    /// the revision shown is the current one (the marks are on its files).
    #[prop(default = None)]
    marks: Option<(i64, Vec<FileMark>)>,
    /// The signed-in user's drafts, with the patch they are on: new threads' drafts on
    /// this revision show under their lines, replies in their threads.
    #[prop(default = None)]
    drafts: Option<(i64, Vec<DraftView>)>,
    /// Where each file downloads as a target's source tree has it and with the fix
    /// applied there: (patch, revision, the targets whose source is known).
    #[prop(default = None)]
    sources: Option<(i64, i64, Vec<String>)>,
    /// Where no target's source is known: the gaps around hunks the patch's other
    /// revisions show lines of (the revision is `held`'s).
    #[prop(optional)]
    known_around: Vec<KnownGap>,
) -> impl IntoView {
    // The lines around each hunk, from the first target whose source tree is known, or
    // else from the other revisions where they show them.
    let around = match (&sources, held) {
        (Some((patch, revision, targets)), _) if !targets.is_empty() => Some(Around {
            patch: *patch,
            revision: *revision,
            from: AroundFrom::Target(targets[0].clone()),
            revealed: RwSignal::new(HashMap::new()),
        }),
        (_, Some((patch, revision))) if !known_around.is_empty() => Some(Around {
            patch,
            revision,
            from: AroundFrom::Revisions(std::sync::Arc::new(
                known_around
                    .iter()
                    .map(|gap| ((gap.file, gap.hunk, gap.below), gap.lines))
                    .collect(),
            )),
            revealed: RwSignal::new(HashMap::new()),
        }),
        _ => None,
    };
    // "Expand all": every gap around the page's hunks at once, one request each, so
    // only where that is a handful.
    let expand_all = around.clone().and_then(|around| {
        // (file, its path, hunk, below) of every gap there may be lines in.
        let spots: Vec<(usize, String, usize, bool)> = match &around.from {
            AroundFrom::Target(_) => files
                .iter()
                .enumerate()
                .flat_map(|(i, file)| {
                    let path = file.path();
                    let last = file.hunks.len().checked_sub(1);
                    let below = last
                        .filter(|_| file.held_back.is_none())
                        .map(|last| (i, path.to_owned(), last, true));
                    (0..file.hunks.len())
                        .map(move |hunk| (i, path.to_owned(), hunk, false))
                        .chain(below)
                })
                .collect(),
            AroundFrom::Revisions(known) => {
                let mut spots: Vec<(usize, String, usize, bool)> = known
                    .keys()
                    .filter_map(|&(file, hunk, below)| {
                        Some((file, files.get(file)?.path().to_owned(), hunk, below))
                    })
                    .collect();
                spots.sort();
                spots
            }
        };
        (spots.len() <= MAX_EXPAND_ALL).then(|| {
            view! {
                <button
                    type="button"
                    class="link"
                    id="expand-all"
                    on:click=move |_| {
                        for (file, path, hunk, below) in &spots {
                            around.reveal(*file, *hunk, path.clone(), *below, MAX_AROUND);
                        }
                    }
                >
                    "Expand all"
                </button>
            }
        })
    });
    let sources = StoredValue::new(sources);
    let (unified, set_unified) = signal(false);
    // The line a comment is being written on, from a click on its number.
    let composing = RwSignal::new(None::<LineTarget>);
    // The keyboard shortcuts, and whether their list is shown.
    let help = RwSignal::new(false);
    crate::keyboard::install(help);
    let shortcuts = move || {
        help.get().then(|| {
            let rows = crate::keyboard::SHORTCUTS
                .iter()
                .map(|(keys, what)| view! { <dt><kbd>{*keys}</kbd></dt> <dd>{*what}</dd> })
                .collect_view();
            view! {
                <div class="shortcuts" id="shortcuts" role="dialog" aria-label="Keyboard shortcuts">
                    <h2>"Keyboard shortcuts"</h2>
                    <dl>{rows}</dl>
                    <button type="button" on:click=move |_| help.set(false)>"Close"</button>
                </div>
            }
        })
    };
    // Two columns of code do not fit a phone: below 900 px the diff starts unified (the
    // server cannot know the width, so the browser switches once it runs).
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        let narrow = web_sys::window()
            .and_then(|w| w.match_media("(max-width: 900px)").ok().flatten())
            .is_some_and(|query| query.matches());
        if narrow {
            set_unified.set(true);
        }
    });
    // Per file, what the server held back and what has been loaded of it since: kept
    // outside the files' rendering, so switching layout keeps what was loaded.
    let lazy: StoredValue<Vec<Lazy>> = StoredValue::new(
        files
            .iter()
            .map(|file| Lazy {
                held: RwSignal::new(file.held_back),
                loaded: RwSignal::new(Vec::new()),
                state: RwSignal::new(LoadState::Idle),
            })
            .collect(),
    );
    let files = StoredValue::new(files);
    // A line anchor (`#path:R12`) in a file whose lines are held back: load them, then
    // show the line.
    #[cfg(feature = "hydrate")]
    {
        let follow = move || {
            let Some(hash) = web_sys::window().and_then(|w| w.location().hash().ok()) else {
                return;
            };
            let anchor = hash.trim_start_matches('#').to_owned();
            let Some(target) = LineTarget::parse(&anchor) else {
                return;
            };
            let present = web_sys::window()
                .and_then(|w| w.document())
                .and_then(|d| d.get_element_by_id(&anchor))
                .is_some();
            if present {
                return;
            }
            let index =
                files.with_value(|files| files.iter().position(|f| f.path() == target.path));
            if let (Some(index), Some((patch, revision))) = (index, held) {
                let hunks = files.with_value(|files| files[index].hunks.len());
                if let Some(lazy) = lazy.with_value(|lazy| lazy.get(index).copied()) {
                    lazy.load(patch, revision, index, hunks, Some(anchor));
                }
            }
        };
        Effect::new(move |_| follow());
        let handle = window_event_listener(leptos::ev::hashchange, move |_| follow());
        on_cleanup(move || handle.remove());
    }
    let notes = StoredValue::new(files.with_value(|files| {
        Notes::new(
            files,
            pitfalls,
            consider,
            (threads, comment),
            drafts.unwrap_or_default(),
        )
    }));
    // By path, looked up once per file in the tree, its header and the count.
    let marks = StoredValue::new(marks.map(|(patch, marks)| {
        let by_path: HashMap<String, bool> =
            marks.into_iter().map(|m| (m.path, m.current)).collect();
        (patch, by_path)
    }));
    let index = files.with_value(|files| {
        marks.with_value(|marks| file_tree(files, marks.as_ref().map(|(_, m)| m)))
    });
    let notes_store = notes;
    // One listener for every line number: a click there starts a comment on that line
    // (and its URL, `#path:R12`, becomes the page's).
    let on_click = move |ev: leptos::ev::MouseEvent| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let cell = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                .filter(|cell| cell.class_list().contains("ln"));
            let Some(cell) = cell else { return };
            let id = cell.id();
            if let Some(target) = LineTarget::parse(&id) {
                if let Some(window) = web_sys::window() {
                    let _ = window.location().set_hash(&id);
                }
                if comment.is_some() {
                    composing.set(Some(target));
                }
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let composer = move || {
        let (patch, revision) = comment?;
        let target = composing.get()?;
        let side = if target.new_side { "new" } else { "old" };
        Some(view! {
            <form
                method="post"
                action=format!("/patches/{patch}/comments")
                class="composer stack"
                id="composer"
            >
                <input type="hidden" name="revision" value=revision.to_string()/>
                <input type="hidden" name="path" value=target.path.clone()/>
                <input type="hidden" name="side" value=side/>
                <input type="hidden" name="line" value=target.line.to_string()/>
                <label>
                    <span>
                        "Comment on " <span class="mono">{target.path.clone()}</span> " "
                        {if target.new_side { "new" } else { "old" }} " line " {target.line}
                        " (r" {revision} ")"
                    </span>
                    <textarea name="body" rows="3" required autofocus></textarea>
                </label>
                <div class="buttons">
                    <button type="submit" class="primary">"Comment"</button>
                    <button type="submit" name="draft" value="1">"Save as draft"</button>
                    <button type="button" on:click=move |_| composing.set(None)>
                        "Cancel"
                    </button>
                </div>
            </form>
        })
    };
    view! {
        <section class="diff-view" on:click=on_click>
            <div class="diff-toolbar">
                <span class="summary">
                    {files_changed}
                    {if files_changed == 1 { " file, " } else { " files, " }}
                    <span class="plus">"+" {added}</span>
                    " "
                    <span class="minus">"−" {removed}</span>
                </span>
                <button
                    type="button"
                    class="link keys"
                    id="show-shortcuts"
                    aria-expanded=move || help.get().to_string()
                    on:click=move |_| help.update(|shown| *shown = !*shown)
                >
                    "Keyboard: ?"
                </button>
                {expand_all}
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
            <nav class="file-index" aria-label="Files">{index}</nav>
            {(!highlighted)
                .then(|| {
                    view! {
                        <p class="hint" role="status">
                            "This long revision is shown as plain text while it is highlighted: reload in a moment for colours."
                        </p>
                    }
                })}
            {comment
                .is_some()
                .then(|| {
                    view! { <p class="hint">"Click a line number to comment on that line."</p> }
                })}
            {composer}
            {shortcuts}
            {move || {
                let unified = unified.get();
                files
                    .with_value(|files| {
                        notes.with_value(|notes| {
                            files
                                .iter()
                                .enumerate()
                                .map(|(i, file)| {
                                    let mark = marks
                                        .with_value(|m| m.as_ref().map(|(patch, m)| (*patch, mark_of(m, file.path()))));
                                    let lazy = lazy.with_value(|lazy| lazy.get(i).copied());
                                    let more = lazy
                                        .zip(held)
                                        .map(|(lazy, at)| more_lines(lazy, at, i, file, unified, notes_store, around.clone()));
                                    sources.with_value(|sources| {
                                        file_block(file, i, unified, notes, mark, sources.as_ref(), (more, around.as_ref()))
                                    })
                                })
                                .collect_view()
                        })
                    })
            }}
        </section>
    }
    .into_any()
}

/// A line of the diff as its anchor names it: `fs/proc/cmdline.c:R12` is new line 12 of
/// that file, `…:L10` old line 10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTarget {
    /// The file's path.
    pub path: String,
    /// The new side (`R`), or the old (`L`).
    pub new_side: bool,
    /// The line number on that side.
    pub line: u32,
}

impl LineTarget {
    /// Reads an anchor (`path:R12`); `None` for anything else. Only the browser reads
    /// anchors (from a click); the server only writes them.
    #[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
    pub fn parse(anchor: &str) -> Option<LineTarget> {
        let (path, line) = anchor.rsplit_once(':')?;
        let new_side = match line.as_bytes().first()? {
            b'R' => true,
            b'L' => false,
            _ => return None,
        };
        let line = line.get(1..)?.parse().ok().filter(|&n| n > 0)?;
        (!path.is_empty()).then(|| LineTarget {
            path: path.to_owned(),
            new_side,
            line,
        })
    }

    /// The anchor of `line` on one side of file `path`.
    pub fn anchor(path: &str, new_side: bool, line: u32) -> String {
        format!("{path}:{}{line}", if new_side { 'R' } else { 'L' })
    }
}

/// What is shown under the diff's lines besides the code.
struct Notes {
    pitfalls: Vec<PitfallView>,
    /// (file, old line, new line) to the pitfalls there: one lookup per line.
    at: std::collections::HashMap<(usize, Option<u32>, Option<u32>), Vec<usize>>,
    consider: Option<(i64, i64)>,
    threads: Vec<ThreadView>,
    /// (file, new side, line) to the threads there.
    thread_at: std::collections::HashMap<(usize, bool, u32), Vec<usize>>,
    /// (patch, revision) when the user may reply and resolve.
    comment: Option<(i64, i64)>,
    /// The patch the user's drafts are on, and the drafts (new threads' and replies).
    draft_patch: i64,
    drafts: Vec<DraftView>,
    /// (file, new side, line) to the new threads' drafts there.
    draft_at: std::collections::HashMap<(usize, bool, u32), Vec<usize>>,
}

impl Notes {
    fn new(
        files: &[FileView],
        pitfalls: Vec<PitfallView>,
        consider: Option<(i64, i64)>,
        (threads, comment): (Vec<ThreadView>, Option<(i64, i64)>),
        (draft_patch, drafts): (i64, Vec<DraftView>),
    ) -> Notes {
        let mut at: std::collections::HashMap<_, Vec<usize>> = std::collections::HashMap::new();
        for (i, p) in pitfalls.iter().enumerate() {
            at.entry((p.file, p.old, p.new)).or_default().push(i);
        }
        // A thread names a renamed file by either path (the server accepts both).
        let file_of: std::collections::HashMap<&str, usize> = files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| {
                [f.old_path.as_deref(), f.new_path.as_deref()]
                    .into_iter()
                    .flatten()
                    .map(move |path| (path, i))
            })
            .collect();
        let mut thread_at: std::collections::HashMap<_, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, t) in threads.iter().enumerate() {
            if let Some(&file) = file_of.get(t.path.as_str()) {
                // A thread of another revision sits on the line it maps to in this one.
                let (side, line) = t
                    .shown_at
                    .as_ref()
                    .map_or((t.side.as_str(), t.line), |(side, line)| {
                        (side.as_str(), *line)
                    });
                thread_at
                    .entry((file, side == "new", line))
                    .or_default()
                    .push(i);
            }
        }
        let mut draft_at: std::collections::HashMap<_, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if d.thread.is_none() {
                if let Some(&file) = file_of.get(d.path.as_str()) {
                    draft_at
                        .entry((file, d.side == "new", d.line))
                        .or_default()
                        .push(i);
                }
            }
        }
        Notes {
            pitfalls,
            at,
            consider,
            threads,
            thread_at,
            comment,
            draft_patch,
            drafts,
            draft_at,
        }
    }

    /// The rows under `lines` (one table row's) of file `index` (`colspan` cells wide):
    /// pitfalls found there, then comment threads on either side of those lines.
    fn rows(&self, index: usize, lines: &[&LineView], colspan: &'static str) -> AnyView {
        let here: Vec<&PitfallView> = lines
            .iter()
            .filter_map(|l| self.at.get(&(index, l.old, l.new)))
            .flatten()
            .map(|&i| &self.pitfalls[i])
            .collect();
        let sides: Vec<(bool, u32)> = lines
            .iter()
            .flat_map(|l| {
                let old = l.old.filter(|_| l.kind != LineKind::Added);
                let new = l.new.filter(|_| l.kind != LineKind::Removed);
                [(false, old), (true, new)]
            })
            .filter_map(|(side, line)| Some((side, line?)))
            .collect();
        let at = |map: &std::collections::HashMap<(usize, bool, u32), Vec<usize>>| {
            let mut found: Vec<usize> = sides
                .iter()
                .filter_map(|&(side, line)| map.get(&(index, side, line)))
                .flatten()
                .copied()
                .collect();
            found.sort_unstable();
            found.dedup();
            found
        };
        let threads = at(&self.thread_at);
        let drafts = at(&self.draft_at);
        if here.is_empty() && threads.is_empty() && drafts.is_empty() {
            return ().into_any();
        }
        let pitfalls = here
            .into_iter()
            .map(|p| pitfall_row(p, colspan, self.consider))
            .collect_view();
        let threads = threads
            .into_iter()
            .map(|i| {
                let t = &self.threads[i];
                let replies = (self.draft_patch, replies_to(t.id, &self.drafts));
                view! {
                    <tr class="thread-row">
                        <td colspan=colspan>
                            {thread_body(t.clone(), self.comment.map(|(patch, _)| patch), replies)}
                        </td>
                    </tr>
                }
            })
            .collect_view();
        let drafts = drafts
            .into_iter()
            .map(|i| {
                let d = self.drafts[i].clone();
                view! {
                    <tr class="thread-row">
                        <td colspan=colspan>{draft_body(d, self.draft_patch, "thread draft")}</td>
                    </tr>
                }
            })
            .collect_view();
        view! { {pitfalls} {threads} {drafts} }.into_any()
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

/// How the signed-in user marked a file: not at all, reviewed as it stands, or reviewed
/// before a later revision changed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    Current,
    Changed,
}

fn mark_of(marks: &HashMap<String, bool>, path: &str) -> Mark {
    match marks.get(path) {
        Some(true) => Mark::Current,
        Some(false) => Mark::Changed,
        None => Mark::None,
    }
}

/// The files as a tree: each directory once, its files under it with their +/- counts
/// and the user's marks, in the diff's order (git orders paths, so a directory's files
/// are together).
fn file_tree(files: &[FileView], marks: Option<&HashMap<String, bool>>) -> impl IntoView {
    let mut groups: Vec<(String, Vec<(usize, &FileView)>)> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let path = file.path();
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned();
        match groups.last_mut() {
            Some((last, members)) if *last == dir => members.push((i, file)),
            _ => groups.push((dir, vec![(i, file)])),
        }
    }
    let reviewed = marks.map(|m| {
        let done = files
            .iter()
            .filter(|f| mark_of(m, f.path()) == Mark::Current)
            .count();
        view! {
            <p class="reviewed-count" id="reviewed-count">
                {done} " of " {files.len()} " files reviewed"
            </p>
        }
    });
    let tree = groups
        .into_iter()
        .map(|(dir, members)| {
            let items = members
                .into_iter()
                .map(|(i, f)| {
                    let name = f.path().rsplit_once('/').map_or(f.path(), |(_, n)| n).to_owned();
                    let mark = marks.map_or(Mark::None, |m| mark_of(m, f.path()));
                    view! {
                        <li class:reviewed=mark == Mark::Current>
                            <span class=format!("chg chg-{}", f.change)>{change_label(&f.change)}</span>
                            <a href=format!("#{}", f.anchor(i)) class="mono" title=f.path().to_owned()>
                                {name}
                            </a>
                            <span class="stat">
                                <span class="plus">"+" {f.added}</span>
                                " "
                                <span class="minus">"−" {f.removed}</span>
                            </span>
                            {match mark {
                                Mark::Current => {
                                    Some(view! { <span class="tick" title="reviewed">"✓ reviewed"</span> }.into_any())
                                }
                                Mark::Changed => {
                                    Some(view! { <span class="tag">"changed since reviewed"</span> }.into_any())
                                }
                                Mark::None => None,
                            }}
                        </li>
                    }
                })
                .collect_view();
            let dir = if dir.is_empty() { "./".to_owned() } else { format!("{dir}/") };
            view! {
                <li class="dir">
                    <span class="mono dim">{dir}</span>
                    <ul>{items}</ul>
                </li>
            }
        })
        .collect_view();
    view! {
        {reviewed}
        <ul class="file-tree">{tree}</ul>
    }
}

fn file_block(
    file: &FileView,
    index: usize,
    unified: bool,
    notes: &Notes,
    mark: Option<(i64, Mark)>,
    sources: Option<&(i64, i64, Vec<String>)>,
    // What follows the file's page hunks: the held-back ones' control and view, and where
    // the lines around hunks come from.
    (more, around): (Option<AnyView>, Option<&Around>),
) -> impl IntoView {
    // The file before and after the fix in the first target whose source is known.
    let downloads = sources.and_then(|(patch, revision, targets)| {
        let target = targets.first()?;
        let href = |side: &str| {
            format!(
                "/patches/{patch}/revisions/{revision}/files/{side}?path={}&target={}",
                crate::model::query_escape(file.path()),
                crate::model::query_escape(target),
            )
        };
        let title = format!("The file in target {target}'s source tree");
        Some(view! {
            <span class="sources" title=title>
                {(file.change != "added")
                    .then(|| view! { <a href=href("old") download="">"old"</a> })}
                " "
                {(file.change != "deleted")
                    .then(|| view! { <a href=href("new") download="">"new"</a> })}
                <span class="dim">" in " {target.clone()}</span>
            </span>
        })
    });
    let body = if file.hunks.is_empty() && file.held_back.is_none() {
        view! { <p class="no-hunks">"No content change."</p> }.into_any()
    } else if file.hunks.is_empty() {
        ().into_any()
    } else {
        let at = around.map(|around| AroundAt {
            around,
            base: 0,
            ends_file: file.held_back.is_none(),
        });
        if unified {
            unified_table(&file.hunks, index, file.path(), notes, at).into_any()
        } else {
            split_table(&file.hunks, index, file.path(), notes, at).into_any()
        }
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
                {downloads}
                {mark.map(|(patch, mark)| reviewed_toggle(patch, file.path(), index, mark))}
            </header>
            {body}
            {more}
        </section>
    }
}

/// How many more lines one press of a "more lines" control reveals.
const AROUND_STEP: usize = 20;
/// The most lines one request reveals (the server's limit too).
const MAX_AROUND: usize = 500;
/// "Expand all" is offered when it takes at most this many requests.
const MAX_EXPAND_ALL: usize = 40;

/// Where the lines around hunks come from, and those revealed so far: kept outside the
/// files' rendering, so a layout switch keeps them.
#[derive(Clone)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Around {
    patch: i64,
    revision: i64,
    from: AroundFrom,
    /// (file, hunk, below) to the lines revealed there, nearest the hunk last above it and
    /// first below, and whether the file has no more there.
    revealed: RwSignal<Revealed>,
}

/// Where the lines around hunks come from.
#[derive(Clone)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum AroundFrom {
    /// A target's copy of each file, by the target's name: every gap may have lines.
    Target(String),
    /// The patch's other revisions: (file, hunk, below) to how many lines they show
    /// there; no other gap has any.
    Revisions(std::sync::Arc<HashMap<(usize, usize, bool), usize>>),
}

/// (file, hunk, below) to the lines revealed there and whether there are no more.
type Revealed = HashMap<(usize, usize, bool), (Vec<LineView>, bool)>;

/// [`Around`] for one table: the file's hunks from `base` on, the file's last among them
/// when `ends_file`.
struct AroundAt<'a> {
    around: &'a Around,
    base: usize,
    ends_file: bool,
}

impl AroundAt<'_> {
    /// What goes above hunk `k` of `hunks` (its "more lines" control and the lines
    /// revealed there) and below it (the same, under the file's last hunk).
    fn parts(
        &self,
        hunks: &[HunkView],
        k: usize,
        file: usize,
        path: &str,
        unified: bool,
    ) -> (AnyView, AnyView) {
        let hunk = self.base + k;
        // A gap above: the hunk does not start at line 1, nor right after the one before.
        let first_old = hunks[k].lines.iter().find_map(|l| l.old);
        let previous_last = k
            .checked_sub(1)
            .and_then(|before| hunks[before].lines.iter().rev().find_map(|l| l.old));
        let gap_above = match (first_old, previous_last) {
            (Some(first), Some(last)) => first > last + 1,
            (Some(first), None) => first > 1 || hunk > 0,
            (None, _) => true,
        };
        let above = gap_above
            .then(|| {
                let control = self.around.control(file, hunk, path, false, unified);
                let rows = self.around.rows(file, hunk, false, unified);
                view! { {control} {rows} }.into_any()
            })
            .into_any();
        let below = (self.ends_file && k + 1 == hunks.len())
            .then(|| {
                let rows = self.around.rows(file, hunk, true, unified);
                let control = self.around.control(file, hunk, path, true, unified);
                view! { {rows} {control} }.into_any()
            })
            .into_any();
        (above, below)
    }
}

impl Around {
    /// The lines revealed next to hunk `hunk` of file `file`, as context rows (no anchors:
    /// they are not the diff's lines, so nobody comments on them).
    fn rows(&self, file: usize, hunk: usize, below: bool, unified: bool) -> impl IntoView {
        let revealed = self.revealed;
        let title = matches!(self.from, AroundFrom::Revisions(_))
            .then_some("Shown by another revision of this fix, not read from a source tree");
        move || {
            revealed.with(|revealed| {
                revealed.get(&(file, hunk, below)).map(|(lines, _)| {
                    lines
                        .iter()
                        .map(|line| {
                            let (old, new) = (number(line.old), number(line.new));
                            let html = line.html.clone();
                            if unified {
                                view! {
                                    <tr class="around" title=title>
                                        <td class="ln" data-ln=old></td>
                                        <td class="ln" data-ln=new></td>
                                        <td class="code ctx" inner_html=html></td>
                                    </tr>
                                }
                                .into_any()
                            } else {
                                view! {
                                    <tr class="around" title=title>
                                        <td class="ln" data-ln=old></td>
                                        <td class="code ctx" inner_html=html.clone()></td>
                                        <td class="ln" data-ln=new></td>
                                        <td class="code ctx" inner_html=html></td>
                                    </tr>
                                }
                                .into_any()
                            }
                        })
                        .collect_view()
                })
            })
        }
    }

    /// The control that reveals more lines there, until there are none.
    fn control(
        &self,
        file: usize,
        hunk: usize,
        path: &str,
        below: bool,
        unified: bool,
    ) -> impl IntoView {
        let around = self.clone();
        let path = path.to_owned();
        let colspan = if unified { "3" } else { "4" };
        move || {
            let (shown, done) = around.revealed.with(|revealed| {
                revealed
                    .get(&(file, hunk, below))
                    .map_or((0, false), |(lines, done)| (lines.len(), *done))
            });
            // The other revisions say how many lines there are; a target's file tells by
            // giving fewer than asked.
            let step = match &around.from {
                AroundFrom::Target(_) => AROUND_STEP,
                AroundFrom::Revisions(known) => known
                    .get(&(file, hunk, below))
                    .map_or(0, |lines| lines.saturating_sub(shown).min(AROUND_STEP)),
            };
            (!done && step > 0).then(|| {
                let (around, path) = (around.clone(), path.clone());
                // Lines from other revisions' diffs are what their author submitted, not
                // a source tree read by the server: the control says so.
                let from = match &around.from {
                    AroundFrom::Target(_) => "",
                    AroundFrom::Revisions(_) => " (from other revisions)",
                };
                let label = format!(
                    "{} Show {step} more {}{from}",
                    if below { "↓" } else { "↑" },
                    if step == 1 { "line" } else { "lines" }
                );
                view! {
                    <tr class="more-context">
                        <td colspan=colspan>
                            <button
                                type="button"
                                class="link"
                                on:click=move |_| {
                                    around.reveal(file, hunk, path.clone(), below, shown + step)
                                }
                            >
                                {label}
                            </button>
                        </td>
                    </tr>
                }
            })
        }
    }

    /// Asks for `count` lines next to the hunk; fewer means there are no more.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn reveal(&self, file: usize, hunk: usize, path: String, below: bool, count: usize) {
        #[cfg(feature = "hydrate")]
        {
            let query = crate::model::ContextQuery {
                id: self.patch,
                revision: self.revision,
                path,
                hunk,
                below,
                count,
                target: match &self.from {
                    AroundFrom::Target(target) => Some(target.clone()),
                    AroundFrom::Revisions(_) => None,
                },
            };
            let revealed = self.revealed;
            leptos::task::spawn_local(async move {
                let (lines, done) = match crate::api::get_context(query).await {
                    Ok(lines) => {
                        let done = lines.len() < count;
                        (lines, done)
                    }
                    // Nothing to show there (the file is not in the tree, the hunk does not
                    // apply): the control goes.
                    Err(_) => (Vec::new(), true),
                };
                revealed.update(|revealed| {
                    revealed.insert((file, hunk, below), (lines, done));
                });
            });
        }
    }
}

/// Where the held-back hunks of one file stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
enum LoadState {
    Idle,
    Loading,
    Failed,
}

/// The hunks of one file the server held back: how many, those loaded since, and whether
/// a load is under way.
#[derive(Clone, Copy)]
struct Lazy {
    held: RwSignal<Option<HeldBack>>,
    loaded: RwSignal<Vec<HunkView>>,
    state: RwSignal<LoadState>,
}

impl Lazy {
    /// Loads the hunks of file `index` from hunk `from` on; then, when given, shows the
    /// element `anchor` names.
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    fn load(self, patch: i64, revision: i64, index: usize, from: usize, anchor: Option<String>) {
        if self.state.get_untracked() == LoadState::Loading || self.held.get_untracked().is_none() {
            return;
        }
        self.state.set(LoadState::Loading);
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::api::get_file_hunks(patch, revision, index, from).await {
                Ok(got) => {
                    self.loaded.set(got.hunks);
                    self.held.set(None);
                    self.state.set(LoadState::Idle);
                    if let Some(anchor) = anchor {
                        request_animation_frame(move || {
                            if let Some(element) = web_sys::window()
                                .and_then(|w| w.document())
                                .and_then(|d| d.get_element_by_id(&anchor))
                            {
                                element.scroll_into_view();
                            }
                        });
                    }
                }
                Err(_) => self.state.set(LoadState::Failed),
            }
        });
    }
}

/// The held-back hunks of file `index`: a control that loads them (a link to the whole
/// diff before hydration), then the hunks themselves.
fn more_lines(
    lazy: Lazy,
    (patch, revision): (i64, i64),
    index: usize,
    file: &FileView,
    unified: bool,
    notes: StoredValue<Notes>,
    around: Option<Around>,
) -> AnyView {
    let from = file.hunks.len();
    let path = file.path().to_owned();
    let control = move || {
        let held = lazy.held.get()?;
        let label = match lazy.state.get() {
            LoadState::Loading => "Loading…".to_owned(),
            LoadState::Failed => "Could not load the lines: try again".to_owned(),
            LoadState::Idle => format!(
                "Show {} more {} ({} {})",
                held.lines,
                if held.lines == 1 { "line" } else { "lines" },
                held.hunks,
                if held.hunks == 1 { "hunk" } else { "hunks" },
            ),
        };
        Some(view! {
            <p class="held-back">
                <a
                    href=format!("/patches/{patch}?rev={revision}&lines=all#file-{index}")
                    class="button"
                    on:click=move |ev| {
                        ev.prevent_default();
                        lazy.load(patch, revision, index, from, None);
                    }
                >
                    {label}
                </a>
            </p>
        })
    };
    let hunks = move || {
        let hunks = lazy.loaded.get();
        (!hunks.is_empty()).then(|| {
            let at = around.as_ref().map(|around| AroundAt {
                around,
                base: from,
                ends_file: true,
            });
            notes.with_value(|notes| {
                if unified {
                    unified_table(&hunks, index, &path, notes, at).into_any()
                } else {
                    split_table(&hunks, index, &path, notes, at).into_any()
                }
            })
        })
    };
    view! { {hunks} {control} }.into_any()
}

/// The "reviewed" switch of a file: a form, so it works before hydration (and `r` presses
/// it).
fn reviewed_toggle(patch: i64, path: &str, index: usize, mark: Mark) -> impl IntoView {
    let on = mark == Mark::Current;
    let label = match mark {
        Mark::Current => "✓ Reviewed",
        Mark::Changed => "Changed since reviewed: mark again",
        Mark::None => "Mark reviewed",
    };
    view! {
        <form method="post" action=format!("/patches/{patch}/reviewed") class="reviewed-form">
            <input type="hidden" name="path" value=path.to_owned()/>
            <input type="hidden" name="anchor" value=format!("file-{index}")/>
            <input type="hidden" name="reviewed" value=if on { "0" } else { "1" }/>
            <button
                type="submit"
                class="reviewed-toggle"
                class:on=on
                aria-pressed=on.to_string()
                title="r"
            >
                {label}
            </button>
        </form>
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

fn split_table(
    hunks: &[HunkView],
    index: usize,
    path: &str,
    notes: &Notes,
    around: Option<AroundAt<'_>>,
) -> impl IntoView {
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
                .enumerate()
                .map(|(k, hunk)| {
                    let (above, below) = around
                        .as_ref()
                        .map(|at| at.parts(hunks, k, index, path, false))
                        .unzip();
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
                                    {half(left, index, path, false, |l| l.old)}
                                    {half(right, index, path, true, |l| l.new)}
                                </tr>
                                {notes.rows(index, &lines, "4")}
                            }
                        })
                        .collect_view();
                    view! { <tbody>{above} {hunk_header(hunk, "4")} {rows} {below}</tbody> }
                })
                .collect_view()}
        </table>
    }
}

fn half(
    line: Option<&LineView>,
    index: usize,
    path: &str,
    new_side: bool,
    number_of: fn(&LineView) -> Option<u32>,
) -> impl IntoView {
    match line {
        Some(line) => view! {
            <td
                class="ln"
                data-ln=number(number_of(line))
                id=number_of(line).map(|n| LineTarget::anchor(path, new_side, n))
            ></td>
            <td
                class=code_class(line.kind)
                data-k=cell_key(index, if new_side { 'n' } else { 'o' }, number_of(line))
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

fn unified_table(
    hunks: &[HunkView],
    index: usize,
    path: &str,
    notes: &Notes,
    around: Option<AroundAt<'_>>,
) -> impl IntoView {
    view! {
        <table class="diff unified">
            <colgroup>
                <col class="ln"/>
                <col class="ln"/>
                <col class="code"/>
            </colgroup>
            {hunks
                .iter()
                .enumerate()
                .map(|(k, hunk)| {
                    let (above, below) = around
                        .as_ref()
                        .map(|at| at.parts(hunks, k, index, path, true))
                        .unzip();
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
                                    <td
                                        class="ln"
                                        data-ln=number(line.old)
                                        id=line.old.map(|n| LineTarget::anchor(path, false, n))
                                    ></td>
                                    <td
                                        class="ln"
                                        data-ln=number(line.new)
                                        id=line.new.map(|n| LineTarget::anchor(path, true, n))
                                    ></td>
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
                    view! { <tbody>{above} {hunk_header(hunk, "3")} {rows} {below}</tbody> }
                })
                .collect_view()}
        </table>
    }
}

#[cfg(test)]
mod tests {
    use super::LineTarget;

    #[test]
    fn line_anchors_read_back() {
        let target = LineTarget::parse("fs/proc/cmdline.c:R12").expect("an anchor");
        assert_eq!(
            target,
            LineTarget {
                path: "fs/proc/cmdline.c".into(),
                new_side: true,
                line: 12
            }
        );
        assert_eq!(
            LineTarget::anchor(&target.path, true, 12),
            "fs/proc/cmdline.c:R12"
        );
        assert_eq!(
            LineTarget::parse("a:b.c:L3").map(|t| (t.path, t.new_side)),
            Some(("a:b.c".into(), false))
        );
        for bad in [
            "", "x.c", "x.c:R", "x.c:R0", "x.c:X3", ":R3", "x.c:R-1", "x.c:R3x",
        ] {
            assert_eq!(LineTarget::parse(bad), None, "{bad}");
        }
    }
}
