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
pub mod model;
mod pages;
mod review_view;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the app, rendered by the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="stylesheet" href="/style/graftbench.css"/>
                <link rel="icon" href="/style/favicon.svg" type="image/svg+xml"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
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
        <Title formatter=|page: String| {
            if page.is_empty() { "Graftbench".to_owned() } else { format!("{page} · Graftbench") }
        }/>
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
            </Routes>
        </Router>
    }
}
