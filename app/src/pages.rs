//! The pages.

use crate::api::{current_user, get_patch, list_patches, load_rejected_submission};
use crate::diff_view::DiffView;
use crate::model::{AppError, PatchPage as PatchData, PatchSummary};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

/// `2026-11-27T16:05:20.123Z` -> `2026-11-27 16:05 UTC`.
fn short_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// Page frame: the top bar with navigation and the signed-in user.
#[component]
fn Frame(children: Children) -> impl IntoView {
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <header class="topbar">
            <a class="brand" href="/">
                <span class="brand-mark">"⟜"</span>
                "graftbench"
            </a>
            <nav class="mainnav">
                <a href="/">"Patches"</a>
                <a href="/patches/new">"Submit a fix"</a>
            </nav>
            <div class="who">
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match user.await {
                            Ok(Some(user)) => {
                                let roles = user
                                    .roles
                                    .iter()
                                    .map(|r| r.label())
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                view! {
                                    <span class="user" title=roles>{user.display_name}</span>
                                    <form method="post" action="/logout" class="logout">
                                        <button type="submit" class="link">"Sign out"</button>
                                    </form>
                                }
                                    .into_any()
                            }
                            _ => ().into_any(),
                        }
                    })}
                </Suspense>
            </div>
        </header>
        <main class="content">{children()}</main>
    }
}

#[component]
fn ErrorPanel(error: AppError) -> impl IntoView {
    match error {
        AppError::NotSignedIn => view! {
            <div class="alert" role="alert">
                "Your session has ended. " <a href="/login">"Sign in again"</a> "."
            </div>
        }
        .into_any(),
        other => view! { <div class="alert" role="alert">{other.to_string()}</div> }.into_any(),
    }
}

/// `/login`
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let failed = move || query.read().get("error").is_some();
    let signed_out = move || query.read().get("signed_out").is_some();
    let next = move || query.read().get("next").unwrap_or_default();
    view! {
        <Title text="Sign in"/>
        <main class="login">
            <div class="login-card">
                <div class="brand big">
                    <span class="brand-mark">"⟜"</span>
                    "graftbench"
                </div>
                <p class="tagline">"Review, approve and ship Linux live patches."</p>
                {move || {
                    failed()
                        .then(|| {
                            view! {
                                <p class="alert" role="alert">"Wrong user name or password."</p>
                            }
                        })
                }}
                {move || {
                    signed_out().then(|| view! { <p class="notice">"You have signed out."</p> })
                }}
                <form method="post" action="/login" class="stack">
                    <input type="hidden" name="next" value=next/>
                    <label>
                        "User name"
                        <input name="username" autocomplete="username" required autofocus/>
                    </label>
                    <label>
                        "Password"
                        <input
                            type="password"
                            name="password"
                            autocomplete="current-password"
                            required
                        />
                    </label>
                    <button type="submit" class="primary">"Sign in"</button>
                </form>
            </div>
        </main>
    }
}

/// `/`: every patch.
#[component]
pub fn PatchListPage() -> impl IntoView {
    let patches = Resource::new(|| (), |_| list_patches());
    view! {
        <Title text="Patches"/>
        <Frame>
            <div class="page-head">
                <h1>"Patches"</h1>
                <a class="button primary" href="/patches/new">"Submit a fix"</a>
            </div>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match patches.await {
                        Ok(list) if list.is_empty() => {
                            view! { <p class="empty">"No patches yet."</p> }.into_any()
                        }
                        Ok(list) => view! { <PatchTable patches=list/> }.into_any(),
                        Err(error) => view! { <ErrorPanel error/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

#[component]
fn PatchTable(patches: Vec<PatchSummary>) -> impl IntoView {
    view! {
        <table class="listing">
            <thead>
                <tr>
                    <th class="num">"#"</th>
                    <th>"Title"</th>
                    <th>"CVEs"</th>
                    <th>"Author"</th>
                    <th>"Created"</th>
                    <th class="num">"Revisions"</th>
                </tr>
            </thead>
            <tbody>
                {patches
                    .into_iter()
                    .map(|p| {
                        let href = format!("/patches/{}", p.id);
                        view! {
                            <tr>
                                <td class="num mono">{p.id}</td>
                                <td>
                                    <a href=href>{p.title}</a>
                                </td>
                                <td class="mono cves">{p.cves.join(" ")}</td>
                                <td>{p.author}</td>
                                <td class="mono">{short_time(&p.created_at)}</td>
                                <td class="num">{p.revisions}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// `/patches/new`: the submission form. A refused submission comes back here with the
/// reason and everything typed (see `RejectedSubmission`).
#[component]
pub fn NewPatchPage() -> impl IntoView {
    let rejected = Resource::new(|| (), |_| load_rejected_submission());
    view! {
        <Title text="Submit a fix"/>
        <Frame>
            <div class="page-head">
                <h1>"Submit a fix"</h1>
            </div>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let form = rejected.await.ok().flatten().unwrap_or_default();
                    let error = (!form.error.is_empty())
                        .then(|| {
                            view! {
                                <p class="alert" role="alert" id="submit-error">
                                    {form.error.clone()}
                                </p>
                            }
                        });
                    view! {
                        {error}
                        <form
                            method="post"
                            action="/patches"
                            enctype="multipart/form-data"
                            class="stack submit"
                        >
                            <label>
                                "Title"
                                <input
                                    name="title"
                                    maxlength="200"
                                    value=form.title
                                    placeholder="netfilter: nf_tables: reject QUEUE/DROP verdict parameters"
                                />
                                <span class="hint">
                                    "Optional for a git format-patch mail: its subject is used."
                                </span>
                            </label>
                            <div class="row">
                                <label>
                                    "CVE ids"
                                    <input
                                        name="cves"
                                        value=form.cves
                                        placeholder="CVE-2024-1086"
                                        class="mono"
                                    />
                                </label>
                                <label>
                                    "CVSS vector"
                                    <input
                                        name="cvss_vector"
                                        value=form.cvss_vector
                                        placeholder="CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
                                        class="mono"
                                    />
                                </label>
                            </div>
                            <label>
                                "The fix: a unified diff or a git format-patch mail"
                                <textarea name="diff" rows="18" class="mono" spellcheck="false">
                                    {form.diff}
                                </textarea>
                            </label>
                            <label>
                                "…or upload it"
                                <input
                                    type="file"
                                    name="diff_file"
                                    accept=".patch,.diff,.mbox,.eml,text/plain,text/x-diff"
                                />
                            </label>
                            <div>
                                <button type="submit" class="primary">"Submit for review"</button>
                            </div>
                        </form>
                    }
                        .into_any()
                })}
            </Suspense>
        </Frame>
    }
}

/// `/patches/:id`: one patch, its revisions, and the diff of one revision.
#[component]
pub fn PatchPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let revision = move || query.read().get("rev").and_then(|s| s.parse::<i64>().ok());
    let page = Resource::new(
        move || (id(), revision()),
        |(id, revision)| async move {
            match id {
                Some(id) => get_patch(id, revision).await,
                None => Err(AppError::NotFound("patch".into())),
            }
        },
    );
    view! {
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(data) => view! { <PatchView data/> }.into_any(),
                        Err(error) => {
                            view! {
                                <Title text="Patch"/>
                                <ErrorPanel error/>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </Frame>
    }
}

#[component]
fn PatchView(data: PatchData) -> impl IntoView {
    let shown = data.shown;
    let info = data.info;
    let revisions = data
        .revisions
        .iter()
        .map(|r| {
            let current = r.number == shown.number;
            let href = format!("/patches/{}?rev={}", info.id, r.number);
            let title = format!(
                "sha256 {} · {} · {}",
                r.sha256,
                r.submitted_by,
                short_time(&r.created_at)
            );
            view! {
                <li class:current=current>
                    <a href=href title=title>
                        "r"
                        {r.number}
                    </a>
                </li>
            }
        })
        .collect_view();
    let mail = shown.mail.clone().map(|mail| {
        view! {
            <details class="mail" open>
                <summary>
                    "Commit message"
                    {mail.commit.map(|c| view! { <span class="mono dim">" " {c}</span> })}
                </summary>
                <dl class="meta">
                    {mail.from.map(|v| view! { <dt>"From"</dt> <dd>{v}</dd> })}
                    {mail.date.map(|v| view! { <dt>"Date"</dt> <dd>{v}</dd> })}
                    {mail.subject.map(|v| view! { <dt>"Subject"</dt> <dd>{v}</dd> })}
                </dl>
                <pre class="message">{mail.message}</pre>
            </details>
        }
    });
    let cvss = if info.cvss_vector.is_empty() {
        "—".to_owned()
    } else {
        info.cvss_vector.clone()
    };
    view! {
        <Title text=info.title.clone()/>
        <div class="page-head">
            <h1>
                <span class="dim mono">"#" {info.id} " "</span>
                {info.title.clone()}
            </h1>
        </div>
        <dl class="facts">
            <div>
                <dt>"CVEs"</dt>
                <dd class="mono">
                    {if info.cves.is_empty() { "—".to_owned() } else { info.cves.join(" ") }}
                </dd>
            </div>
            <div>
                <dt>"CVSS vector"</dt>
                <dd class="mono">{cvss}</dd>
            </div>
            <div>
                <dt>"Author"</dt>
                <dd>{info.author.clone()}</dd>
            </div>
            <div>
                <dt>"Created"</dt>
                <dd class="mono">{short_time(&info.created_at)}</dd>
            </div>
            <div>
                <dt>"Revision"</dt>
                <dd>
                    <ul class="revisions">{revisions}</ul>
                </dd>
            </div>
            <div>
                <dt>"SHA-256"</dt>
                <dd class="mono sha" title="SHA-256 of the submitted bytes">
                    {shown.sha256.clone()}
                </dd>
            </div>
        </dl>
        {mail}
        <DiffView
            files=shown.files
            files_changed=shown.files_changed
            added=shown.added
            removed=shown.removed
        />
    }
    .into_any()
}

/// Any path no route matches.
#[component]
pub fn NotFoundPage() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::api::ssr::set_status(404);
    view! {
        <Title text="Not found"/>
        <Frame>
            <h1>"Not found"</h1>
            <p>"There is no page at this address. " <a href="/">"Back to the patches"</a> "."</p>
        </Frame>
    }
}
