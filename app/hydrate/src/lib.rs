//! Hydrates the server-rendered page: attaches Graftbench's reactive components to the
//! HTML the server already sent, so nothing is rendered twice.
#![forbid(unsafe_code)]

use wasm_bindgen::prelude::wasm_bindgen;

/// Called by the `HydrationScripts` loader once the bundle is instantiated.
#[wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(graftbench_app::App);
    // `data-hydrated` on <html>: the page's components are attached (tests and scripts
    // wait for it; a hydration panic never gets here).
    if let Some(root) = leptos::prelude::document().document_element() {
        let _ = root.set_attribute("data-hydrated", "true");
    }
}
