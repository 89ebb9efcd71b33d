//! Graftbench's user interface: Leptos components rendered on the server and hydrated in
//! the browser from the same code.
//!
//! With the `ssr` feature this crate renders HTML and runs server-function bodies (which
//! reach the database only through [`api::ssr::Workbench`]); with `hydrate` it is compiled
//! to WASM and attaches to the server's HTML.
//!
//! Components end their view with `.into_any()`. Without it each page's type nests every
//! child component's, and type-checking this crate took 125 s instead of 3 (measured with
//! `cargo check -p graftbench-app --features ssr` after adding the review pages); the
//! erased view costs one allocation per component.
#![deny(missing_docs)]
// Leptos encodes a view's whole tree in its type; the patch page is deep enough to
// need more than the default 128 levels when compiled for hydration.
#![recursion_limit = "256"]

// `#[server]` generates an argument struct per function whose fields cannot carry docs.
#[allow(missing_docs)]
pub mod api;
mod diff_view;
mod impact_view;
mod keyboard;
pub mod model;
mod pages;
mod review_view;
mod targets_view;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// Where pages load the bundle and the stylesheet from. The build writes copies named
/// by their content's hash (`/pkg/graftbench_ui_bg.3f2a….wasm`, listed in the site's
/// `assets.json`), which browsers may cache for good; the server provides those names as
/// context. Without them (a site built by hand) the plain names are used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SiteAssets {
    /// The bundle's JavaScript.
    pub js: String,
    /// Its WebAssembly.
    pub wasm: String,
    /// The stylesheet.
    pub css: String,
}

impl SiteAssets {
    /// The plain names, for `pkg_dir` (`pkg`) and the bundle's `name`.
    pub fn plain(pkg_dir: &str, name: &str) -> SiteAssets {
        SiteAssets {
            js: format!("/{pkg_dir}/{name}.js"),
            wasm: format!("/{pkg_dir}/{name}_bg.wasm"),
            css: "/style/graftbench.css".into(),
        }
    }
}

/// The HTML document around the app, rendered by the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    let assets = use_context::<SiteAssets>()
        .unwrap_or_else(|| SiteAssets::plain(&options.site_pkg_dir, &options.output_name));
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href=assets.css.clone()/>
                <link rel="icon" href="/style/favicon.svg" type="image/svg+xml"/>
                <HydrationLoader assets/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The document title for a page's own title (often the user's text: a patch's title).
///
/// On the server the result is written between `<title>` tags, and leptos_meta (0.8.7,
/// unchanged in 0.9.0-rc1) writes it there as is: a title of `</title><script>` would
/// end the element and run script. So the server escapes it; the browser sets
/// `document.title`, which is text, and must not escape it a second time.
pub fn title_text(page: String) -> String {
    let title = if page.is_empty() {
        "Graftbench".to_owned()
    } else {
        format!("{page} · Graftbench")
    };
    if cfg!(feature = "ssr") {
        escape_html_text(&title)
    } else {
        title
    }
}

/// Escapes text for an HTML text node or a quoted attribute value.
pub fn escape_html_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_html_into(&mut out, text);
    out
}

/// Appends `text` to `out`, escaped for an HTML text node or a quoted attribute value.
pub fn escape_html_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Loads the WebAssembly bundle and hydrates the page: Leptos' `HydrationScripts`, with
/// the response's nonce where a Content-Security-Policy needs it.
///
/// Leptos 0.8.23 writes the nonce into the `crossorigin` attribute of its
/// `<link rel="modulepreload">` instead of a `nonce` attribute, so under a nonce-only
/// `script-src` the browser blocks the preload and logs a violation on every page (the
/// `import()` in the loader, which inherits the nonce, still works). Here the preload
/// carries the nonce. The loader script is Leptos' own.
#[component]
fn HydrationLoader(assets: SiteAssets) -> impl IntoView {
    let nonce = leptos::nonce::use_nonce();
    let SiteAssets { js, wasm, .. } = assets;
    let loader = format!(
        "(function (js, wasm) {{ import(js).then(mod => {{ \
         mod.default({{module_or_path: wasm}}).then(() => {{ mod.hydrate(); }}); }}); }})({js:?}, {wasm:?});"
    );
    view! {
        <link rel="modulepreload" href=js nonce=nonce.clone()/>
        <link
            rel="preload"
            href=wasm
            r#as="fetch"
            r#type="application/wasm"
            crossorigin="anonymous"
        />
        <script type="module" nonce=nonce>
            {loader}
        </script>
    }
}

/// The routed application.
///
/// Pages render in [`SsrMode::Async`]: the server waits for a page's data and sends it
/// whole, so the status code is right (a missing patch is a 404) and the page reads
/// correctly before, or without, the WASM bundle.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Title formatter=title_text/>
        <Router>
            <Routes fallback=pages::NotFoundPage>
                <Route path=path!("/login") view=pages::LoginPage ssr=SsrMode::Async/>
                <Route path=path!("/") view=pages::PatchListPage ssr=SsrMode::Async/>
                <Route path=path!("/patches/new") view=pages::NewPatchPage ssr=SsrMode::Async/>
                <Route path=path!("/patches/:id") view=pages::PatchPage ssr=SsrMode::Async/>
                <Route
                    path=path!("/patches/:id/interdiff")
                    view=pages::InterdiffPage
                    ssr=SsrMode::Async
                />
                <Route path=path!("/audit") view=pages::AuditPage ssr=SsrMode::Async/>
                <Route path=path!("/policy") view=pages::PolicyPage ssr=SsrMode::Async/>
                <Route path=path!("/admin") view=pages::AdminPage ssr=SsrMode::Async/>
                <Route path=path!("/targets") view=targets_view::TargetsPage ssr=SsrMode::Async/>
                <Route
                    path=path!("/targets/:name")
                    view=targets_view::TargetPage
                    ssr=SsrMode::Async
                />
            </Routes>
        </Router>
    }
}
