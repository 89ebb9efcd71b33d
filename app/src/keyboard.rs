//! Keyboard shortcuts on a diff, as reviewers know them from Gerrit: `j`/`k` next and
//! previous line, `n`/`p` next and previous file, `]`/`[` next and previous unresolved
//! thread, `c` comment on the current line, `u` switch side by side and unified, `r` mark
//! the current file reviewed (or not), `?` the list. The current line is the focused line number, so the browser's focus ring shows
//! it and Tab, Enter and screen readers follow it.
//!
//! The shortcuts act on the page's elements as the server rendered them (line numbers
//! carry their anchor as `id`); clicking a line number is what starts a comment, so `c`
//! clicks it.

use leptos::prelude::*;

/// The shortcuts, for the list `?` shows: (keys, what they do).
pub const SHORTCUTS: [(&str, &str); 8] = [
    ("j / k", "next / previous line"),
    ("n / p", "next / previous file"),
    ("] / [", "next / previous unresolved thread"),
    ("c", "comment on the current line"),
    ("u", "side by side or unified"),
    ("r", "mark the current file reviewed, or not"),
    ("?", "show or hide this list"),
    ("Esc", "close this list"),
];

/// Listens for the shortcuts while the calling component lives; `help` is whether the
/// list is shown.
pub fn install(help: RwSignal<bool>) {
    #[cfg(feature = "hydrate")]
    {
        let handle = window_event_listener(leptos::ev::keydown, move |ev| on_key(&ev, help));
        on_cleanup(move || handle.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = help;
}

#[cfg(feature = "hydrate")]
fn on_key(ev: &web_sys::KeyboardEvent, help: RwSignal<bool>) {
    if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
        return;
    }
    let Some(document) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let active = document.active_element();
    // Typing is typing: no shortcut in a text field.
    if let Some(element) = &active {
        if matches!(element.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT") {
            return;
        }
    }
    match ev.key().as_str() {
        "j" => step(&document, active.as_ref(), Kind::Line, true),
        "k" => step(&document, active.as_ref(), Kind::Line, false),
        "n" => step(&document, active.as_ref(), Kind::File, true),
        "p" => step(&document, active.as_ref(), Kind::File, false),
        "]" => step(&document, active.as_ref(), Kind::Thread, true),
        "[" => step(&document, active.as_ref(), Kind::Thread, false),
        "c" => {
            let line = active
                .filter(|a| a.class_list().contains("ln") && !a.id().is_empty())
                .or_else(|| {
                    step(&document, None, Kind::Line, true);
                    document.active_element()
                });
            if let Some(line) = line.and_then(as_html) {
                line.click();
            }
        }
        "u" => {
            // The layout button not pressed now.
            if let Some(button) = document
                .query_selector(".segmented button:not(.on)")
                .ok()
                .flatten()
                .and_then(as_html)
            {
                button.click();
            }
        }
        "r" => {
            // The focused line's file, or the first file on screen.
            let file = active
                .and_then(|a| a.closest("section.file").ok().flatten())
                .or_else(|| {
                    stops(&document, Kind::File)
                        .into_iter()
                        .find(|f| f.get_bounding_client_rect().bottom() > 0.0)
                });
            if let Some(toggle) = file
                .and_then(|f| f.query_selector(".reviewed-toggle").ok().flatten())
                .and_then(as_html)
            {
                toggle.click();
            }
        }
        "?" => help.update(|shown| *shown = !*shown),
        "Escape" if help.get_untracked() => help.set(false),
        _ => return,
    }
    ev.prevent_default();
}

#[cfg(feature = "hydrate")]
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Line,
    File,
    Thread,
}

#[cfg(feature = "hydrate")]
fn as_html(element: web_sys::Element) -> Option<web_sys::HtmlElement> {
    leptos::wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(element).ok()
}

/// The elements `kind` moves between, in page order: one line number per table row
/// (the new side's where there is one), the files, the unresolved threads.
#[cfg(feature = "hydrate")]
fn stops(document: &web_sys::Document, kind: Kind) -> Vec<web_sys::Element> {
    let selector = match kind {
        Kind::Line => "table.diff td.ln[id]",
        Kind::File => "section.file",
        Kind::Thread => ".thread:not(.resolved)",
    };
    let Ok(nodes) = document.query_selector_all(selector) else {
        return Vec::new();
    };
    let mut found: Vec<web_sys::Element> = Vec::new();
    for index in 0..nodes.length() {
        let Some(element) = nodes
            .item(index)
            .and_then(|n| leptos::wasm_bindgen::JsCast::dyn_into::<web_sys::Element>(n).ok())
        else {
            continue;
        };
        if kind == Kind::Line {
            // Side by side, a row has two line numbers: keep the later (new) one.
            let same_row = found.last().is_some_and(|last| {
                last.parent_element()
                    .zip(element.parent_element())
                    .is_some_and(|(a, b)| a.is_same_node(Some(&b)))
            });
            if same_row {
                found.pop();
            }
        }
        found.push(element);
    }
    found
}

/// Moves the focus to the next (or previous) stop of `kind` from the focused element,
/// or from the top of the screen when the focus is elsewhere.
#[cfg(feature = "hydrate")]
fn step(
    document: &web_sys::Document,
    active: Option<&web_sys::Element>,
    kind: Kind,
    forward: bool,
) {
    let stops = stops(document, kind);
    if stops.is_empty() {
        return;
    }
    let current = active.and_then(|a| {
        stops
            .iter()
            .position(|s| s.is_same_node(Some(a)) || s.contains(Some(a)))
    });
    // Focus on a file (after `n`): its first line, or its last going back.
    let inside = || {
        let a = active?;
        let mut within = stops
            .iter()
            .enumerate()
            .filter(|(_, s)| a.contains(Some(s)));
        if forward {
            within.next().map(|(i, _)| i)
        } else {
            within.last().map(|(i, _)| i)
        }
    };
    let next = match (current, forward) {
        (Some(i), true) => (i + 1).min(stops.len() - 1),
        (Some(i), false) => i.saturating_sub(1),
        (None, _) if inside().is_some() => inside().unwrap_or_default(),
        // From the screen: the first stop at or below its top going forward, the last
        // above it going back.
        (None, true) => stops
            .iter()
            .position(|s| s.get_bounding_client_rect().top() >= 0.0)
            .unwrap_or(stops.len() - 1),
        (None, false) => stops
            .iter()
            .rposition(|s| s.get_bounding_client_rect().top() < 0.0)
            .unwrap_or(0),
    };
    let target = &stops[next];
    // Focusable by script only: Tab still goes from control to control.
    if !target.has_attribute("tabindex") {
        let _ = target.set_attribute("tabindex", "-1");
    }
    if let Some(target) = as_html(target.clone()) {
        let _ = target.focus();
    }
}
