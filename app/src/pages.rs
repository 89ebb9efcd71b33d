//! The pages.

use crate::api::{
    current_user, flash_message, get_audit, get_impact, get_interdiff, get_patch, get_policy,
    list_patches, list_targets, list_users, load_rejected_submission,
};
use crate::diff_view::DiffView;
use crate::impact_view::ImpactPanel;
use crate::model::{
    query_escape, Action, AppError, AuditFilter, Category, CheckpointView, ImpactView, LineKind,
    PatchFilter, PatchPage as PatchData, PatchSummary, ReplaceSetChange, Role, SegmentView, State,
    Tier,
};
use crate::review_view::{DeadlineClock, ReviewPanel, StateBadge};
use crate::targets_view::Flash;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::review_view::short_time;

/// Page frame: the top bar with navigation and the signed-in user.
#[component]
pub(crate) fn Frame(children: Children) -> impl IntoView {
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <header class="topbar">
            <a class="brand" href="/">
                <span class="brand-mark">"⟜"</span>
                "graftbench"
            </a>
            <nav class="mainnav" aria-label="Main">
                <a href="/">"Patches"</a>
                // Each link only for those the server lets in.
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        let user = user.await.ok().flatten();
                        let may = |check: fn(&crate::model::SessionUser) -> bool| {
                            user.as_ref().is_some_and(check)
                        };
                        view! {
                            {may(|u| u.submits_fixes())
                                .then(|| view! { <a href="/patches/new">"Submit a fix"</a> })}
                            {may(|u| u.reads_audit())
                                .then(|| view! { <a href="/audit">"Audit trail"</a> })}
                            <a href="/policy">"Policy"</a>
                            <a href="/targets">"Targets"</a>
                            {may(|u| u.has_role(Role::Admin))
                                .then(|| view! { <a href="/admin">"Users"</a> })}
                        }
                    })}
                </Suspense>
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
    .into_any()
}

#[component]
pub(crate) fn ErrorPanel(error: AppError) -> impl IntoView {
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

/// The fixed message for a sign-in error code.
fn sign_in_error(code: &str) -> &'static str {
    match code {
        "throttled" => "Too many sign-in attempts. Wait a minute, then try again.",
        "busy" => "The server is busy signing others in. Try again in a moment.",
        _ => "Wrong user name or password.",
    }
}

/// `/login`
#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    // The URL carries a code, never text: a link cannot make this page say anything else.
    let failed = move || query.read().get("error").map(|code| sign_in_error(&code));
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
                        .map(|message| {
                            view! { <p class="alert" role="alert">{message}</p> }
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
    .into_any()
}

/// `/?q=&state=&target=&needs=me&author=me&due=soon`: the patches the filters select
/// (all of them without filters), most urgent first. The filters live in the URL, so a
/// view can be shared or bookmarked.
#[component]
pub fn PatchListPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.read();
        PatchFilter {
            q: q.get("q").unwrap_or_default(),
            state: q.get("state").unwrap_or_default(),
            target: q.get("target").unwrap_or_default(),
            needs: q.get("needs").unwrap_or_default(),
            author: q.get("author").unwrap_or_default(),
            due: q.get("due").unwrap_or_default(),
        }
    };
    let patches = Resource::new(filter, list_patches);
    let user = Resource::new(|| (), |_| current_user());
    let targets = Resource::new(|| (), |_| list_targets());
    view! {
        <Title text="Patches"/>
        <Frame>
            <div class="page-head">
                <h1>"Patches"</h1>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        matches!(user.await, Ok(Some(ref u)) if u.submits_fixes())
                            .then(|| {
                                view! {
                                    <a class="button primary" href="/patches/new">
                                        "Submit a fix"
                                    </a>
                                }
                            })
                    })}
                </Suspense>
            </div>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let names: Vec<String> = targets
                        .await
                        .map(|t| t.targets.into_iter().map(|t| t.name).collect())
                        .unwrap_or_default();
                    view! { <PatchFilters filter=filter() targets=names/> }
                })}
            </Suspense>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match patches.await {
                        Ok(list) if list.is_empty() && filter().is_set() => {
                            view! {
                                <p class="empty" id="no-match">
                                    "No patch matches these filters. " <a href="/">"Show all"</a>
                                </p>
                            }
                                .into_any()
                        }
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
    .into_any()
}

/// The dashboard's filter form: a plain GET to `/`, so it works before hydration and
/// its result is a URL.
#[component]
fn PatchFilters(filter: PatchFilter, targets: Vec<String>) -> impl IntoView {
    let state_options = State::ALL
        .into_iter()
        .map(|s| {
            view! {
                <option value=s.as_str() selected=filter.state == s.as_str()>
                    {s.label()}
                </option>
            }
        })
        .collect_view();
    let target_options = targets
        .into_iter()
        .map(|t| {
            let selected = filter.target == t;
            view! { <option value=t.clone() selected=selected>{t.clone()}</option> }
        })
        .collect_view();
    view! {
        <form method="get" action="/" class="row filters" id="patch-filters" role="search">
            <label class="grow">
                "Search"
                <input
                    type="search"
                    name="q"
                    id="filter-q"
                    value=filter.q.clone()
                    placeholder="title, CVE or path"
                    maxlength="200"
                />
            </label>
            <label>
                "State"
                <select name="state" id="filter-state">
                    <option value="">"any"</option>
                    {state_options}
                </select>
            </label>
            <label>
                "Target"
                <select name="target" id="filter-target">
                    <option value="">"any"</option>
                    {target_options}
                </select>
            </label>
            <label class="check">
                <input type="checkbox" name="needs" value="me" checked=filter.needs == "me"/>
                "Needs my review"
            </label>
            <label class="check">
                <input type="checkbox" name="author" value="me" checked=filter.author == "me"/>
                "Mine"
            </label>
            <label class="check">
                <input type="checkbox" name="due" value="soon" checked=filter.due == "soon"/>
                "Due soon"
            </label>
            <div class="buttons">
                <button type="submit">"Filter"</button>
                {filter.is_set().then(|| view! { <a href="/" class="button">"Clear"</a> })}
            </div>
        </form>
    }
    .into_any()
}

#[component]
fn PatchTable(patches: Vec<PatchSummary>) -> impl IntoView {
    view! {
        <table class="listing">
            <thead>
                <tr>
                    <th class="num">"#"</th>
                    <th>"Title"</th>
                    <th>"State"</th>
                    <th>"Due"</th>
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
                        let overdue = p.deadline.overdue();
                        view! {
                            <tr class:overdue=overdue data-patch=p.id>
                                <td class="num mono">{p.id}</td>
                                <td>
                                    <a href=href>{p.title}</a>
                                    {p.requested_from_me
                                        .then(|| {
                                            view! {
                                                <span class="tag unresolved" title="someone asked you to review it">
                                                    "review requested"
                                                </span>
                                            }
                                        })}
                                    {(!p.eligible && p.state.is_active())
                                        .then(|| {
                                            view! {
                                                <span class="tag" title="not eligible for live patching">
                                                    "not eligible"
                                                </span>
                                            }
                                        })}
                                </td>
                                <td>
                                    <StateBadge state=p.state/>
                                </td>
                                <td>
                                    <DeadlineClock deadline=p.deadline/>
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
    .into_any()
}

/// `/patches/new`: the submission form. A refused submission comes back here with the
/// reason and everything typed (see `RejectedSubmission`).
#[component]
pub fn NewPatchPage() -> impl IntoView {
    let rejected = Resource::new(|| (), |_| load_rejected_submission());
    let targets = Resource::new(|| (), |_| list_targets());
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <Title text="Submit a fix"/>
        <Frame>
            <div class="page-head">
                <h1>"Submit a fix"</h1>
            </div>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let submits = matches!(user.await, Ok(Some(ref u)) if u.submits_fixes());
                    if !submits {
                        // The server refuses anyone else's submission: no form to fill in
                        // for nothing.
                        return view! {
                            <p class="notice" id="not-an-author">
                                "Fixes are submitted by authors. Ask an admin for the author role to submit one."
                            </p>
                        }
                            .into_any();
                    }
                    let form = rejected.await.ok().flatten().unwrap_or_default();
                    // The active targets, to analyse the fix for; none ticked: all of them.
                    let active: Vec<String> = targets
                        .await
                        .map(|page| {
                            page.targets
                                .into_iter()
                                .filter(|t| t.retired_at.is_none())
                                .map(|t| t.name)
                                .collect()
                        })
                        .unwrap_or_default();
                    let target_boxes = (!active.is_empty())
                        .then(|| {
                            let boxes = active
                                .into_iter()
                                .map(|name| {
                                    view! {
                                        <label class="check">
                                            <input type="checkbox" name="targets" value=name.clone()/>
                                            <span class="mono">{name}</span>
                                        </label>
                                    }
                                })
                                .collect_view();
                            view! {
                                <fieldset class="targets">
                                    <legend>"Kernel targets to analyse it for (none ticked: every active target)"</legend>
                                    {boxes}
                                </fieldset>
                            }
                        });
                    let has_error = !form.error.is_empty();
                    let error = has_error
                        .then(|| {
                            view! {
                                <p class="alert" role="alert" id="submit-error">
                                    {form.error.clone()}
                                </p>
                            }
                        });
                    view! {
                        {error}
                        // Posted to this page's own path: a refused submission is
                        // rendered here again, and the page the browser then shows
                        // must be the one the router in the page finds at its URL.
                        <form
                            method="post"
                            action="/patches/new"
                            enctype="multipart/form-data"
                            class="stack submit"
                            aria-describedby=has_error.then_some("submit-error")
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
                            <div class="row">
                                <label>
                                    "What it fixes"
                                    <select name="category">
                                        {Category::ALL
                                            .into_iter()
                                            .map(|c| {
                                                view! {
                                                    <option
                                                        value=c.as_str()
                                                        selected=form.category == c.as_str()
                                                    >
                                                        {c.label()}
                                                    </option>
                                                }
                                            })
                                            .collect_view()}
                                    </select>
                                </label>
                                <label>
                                    "Change tier"
                                    <select name="tier">
                                        {Tier::ALL
                                            .into_iter()
                                            .map(|t| {
                                                let selected = form.tier == t.as_str()
                                                    || (form.tier.is_empty() && t == Tier::Scheduled);
                                                view! {
                                                    <option value=t.as_str() selected=selected>
                                                        {t.as_str()}
                                                    </option>
                                                }
                                            })
                                            .collect_view()}
                                    </select>
                                </label>
                                <label>
                                    "Reported at"
                                    <input
                                        name="reported_at"
                                        value=form.reported_at
                                        placeholder="2026-11-27T09:30:00Z (default: now)"
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
                            {target_boxes}
                            <div class="buttons">
                                <button type="submit" class="primary">"Submit for review"</button>
                                <button type="submit" name="draft" value="1">
                                    "Save as draft"
                                </button>
                            </div>
                        </form>
                    }
                        .into_any()
                })}
            </Suspense>
        </Frame>
    }
    .into_any()
}

/// Loads the patch page again when bumped (see [`PatchPage`]).
#[derive(Clone, Copy)]
pub struct PageRefresh(pub RwSignal<u32>);

/// `/patches/:id`: one patch, its revisions, and the diff of one revision.
#[component]
pub fn PatchPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    let revision = move || query.read().get("rev").and_then(|s| s.parse::<i64>().ok());
    // `?lines=all`: every line of a long diff at once (without JavaScript, the way to the
    // lines the page holds back).
    let all_lines = move || query.read().get("lines").as_deref() == Some("all");
    // Bumped when an analysis the page follows finishes: the page loads again (its
    // pitfalls and eligibility come from the analyses), without a reload.
    let refresh = RwSignal::new(0u32);
    provide_context(PageRefresh(refresh));
    let page = Resource::new(
        move || (id(), revision(), all_lines(), refresh.get()),
        |(id, revision, all_lines, _)| async move {
            match id {
                Some(id) => get_patch(id, revision, all_lines).await,
                None => {
                    #[cfg(feature = "ssr")]
                    crate::api::ssr::set_status(404);
                    Err(AppError::NotFound("patch".into()))
                }
            }
        },
    );
    // The impact panel's data loads beside the page's, not after it. Made here, once: a
    // resource made inside the `Suspend` below would be made (and loaded) again each time
    // the server walks the page for pending loads, three times per view.
    let target = move || query.read().get("target");
    let search = move || query.read().get("q").unwrap_or_default();
    let impact = Resource::new(
        move || (id(), revision(), target(), search(), refresh.get()),
        |(id, revision, target, search, _)| async move {
            match id {
                Some(id) => get_impact(id, revision, target, search).await,
                None => Err(AppError::NotFound("patch".into())),
            }
        },
    );
    let flash = Resource::new(|| (), |_| flash_message());
    view! {
        <Frame>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    let error = flash.await.ok().flatten();
                    match page.await {
                        Ok(data) => view! { <PatchView data error impact/> }.into_any(),
                        Err(error) => {
                            view! {
                                <Title text="Patch"/>
                                <ErrorPanel error/>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </Frame>
    }
    .into_any()
}

#[component]
fn PatchView(
    data: PatchData,
    error: Option<String>,
    impact: Resource<Result<ImpactView, AppError>>,
) -> impl IntoView {
    let shown = data.shown;
    let info = data.info;
    let can_comment = data.review.actions.contains(&Action::Comment);
    let on_current = shown.number == data.review.current_revision;
    let threads_here: Vec<_> = data
        .review
        .threads
        .iter()
        .filter(|t| t.revision == shown.number || t.shown_at.is_some())
        .cloned()
        .collect();
    // New threads' drafts show on their own revision's lines; replies in their threads.
    let drafts_here: Vec<_> = data
        .review
        .drafts
        .iter()
        .filter(|d| d.thread.is_some() || d.revision == shown.number)
        .cloned()
        .collect();
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
            <details class="mail">
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
            <EvidenceLink href=format!("/patches/{}/evidence", info.id)/>
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
            <div>
                <dt>"Download"</dt>
                <dd>
                    <a
                        id="download-patch"
                        href=format!("/patches/{}/revisions/{}.patch", info.id, shown.number)
                        rel="external"
                        download
                    >
                        "r"
                        {shown.number}
                        ".patch"
                    </a>
                </dd>
            </div>
        </dl>
        {mail}
        <ReviewPanel
            pitfalls=data.pitfalls.clone()
            patch=info.id
            review=data.review
            shown_revision=shown.number
            revisions=data.revisions.clone()
            error
        >
            // Side by side on wide screens; below, two tabs (radio buttons: no script needed).
            <div class="code-and-impact">
                <input type="radio" name="pane" id="pane-diff" class="pane-tab" checked/>
                <label for="pane-diff" class="pane-label">"Diff"</label>
                <input type="radio" name="pane" id="pane-impact" class="pane-tab"/>
                <label for="pane-impact" class="pane-label">"Impact"</label>
                <div class="pane pane-diff">
                    <DiffView
                        files=shown.files
                        files_changed=shown.files_changed
                        added=shown.added
                        removed=shown.removed
                        highlighted=shown.highlighted
                        held=Some((info.id, shown.number))
                        pitfalls=data.pitfalls
                        consider=can_comment.then_some((info.id, shown.number))
                        threads=threads_here
                        comment=can_comment.then_some((info.id, shown.number))
                        marks=on_current.then_some((info.id, data.file_marks))
                        drafts=Some((info.id, drafts_here))
                        sources=(!data.source_targets.is_empty())
                            .then(|| (info.id, shown.number, data.source_targets.clone()))
                        known_around=data.known_around
                    />
                </div>
                <div class="pane pane-impact">
                    <ImpactPanel patch=info.id impact/>
                </div>
            </div>
        </ReviewPanel>
    }
    .into_any()
}

/// How the functions to replace changed between the two revisions, per target.
#[component]
fn ReplaceSets(changes: Vec<ReplaceSetChange>, from: i64, to: i64) -> impl IntoView {
    if changes.is_empty() {
        return ().into_any();
    }
    let rows = changes
        .into_iter()
        .map(|c| {
            let names = |list: &[String], sign: &'static str, class: &'static str| {
                list.iter()
                    .map(|name| view! { <li class=class><span class="mono">{sign} " " {name.clone()}</span></li> })
                    .collect_view()
            };
            let body = match &c.missing {
                Some(why) => view! { <p class="dim">{why.clone()}</p> }.into_any(),
                None if c.added.is_empty() && c.removed.is_empty() => {
                    view! { <p class="dim">{format!("the same {} function(s)", c.kept)}</p> }.into_any()
                }
                None => view! {
                    <ul class="replace-delta">
                        {names(&c.added, "+", "plus")}
                        {names(&c.removed, "−", "minus")}
                    </ul>
                    <p class="dim">{format!("{} function(s) in both", c.kept)}</p>
                }
                .into_any(),
            };
            view! {
                <div class="replace-set" data-target=c.target.clone()>
                    <h3 class="mono">{c.target.clone()}</h3>
                    {body}
                </div>
            }
        })
        .collect_view();
    view! {
        <section class="replace-sets" id="replace-sets">
            <h2>"Functions to replace, r" {from} " → r" {to}</h2>
            {rows}
        </section>
    }
    .into_any()
}

/// `/patches/:id/interdiff?from=N&to=M`: what changed between two revisions.
#[component]
pub fn InterdiffPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let key = move || {
        let id = params.read().get("id").and_then(|s| s.parse::<i64>().ok());
        let q = query.read();
        let from = q.get("from").and_then(|s| s.parse::<i64>().ok());
        let to = q.get("to").and_then(|s| s.parse::<i64>().ok());
        (id, from, to)
    };
    let data = Resource::new(key, |(id, from, to)| async move {
        match (id, from, to) {
            (Some(id), Some(from), Some(to)) => get_interdiff(id, from, to).await,
            _ => Err(AppError::NotFound("interdiff (give ?from=N&to=M)".into())),
        }
    });
    view! {
        <Title text="Interdiff"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(d) => view! { <InterdiffView d/> }.into_any(),
                        Err(error) => view! { <ErrorPanel error/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
    .into_any()
}

#[component]
fn InterdiffView(d: crate::model::InterdiffView) -> impl IntoView {
    let (from, to, id) = (d.from, d.to, d.info.id);
    let same = d.files.is_empty() && d.message.is_empty();
    let added = d.files.iter().map(|f| f.added).sum::<usize>();
    let removed = d.files.iter().map(|f| f.removed).sum::<usize>();
    let choices = |chosen: i64| {
        d.revisions
            .iter()
            .map(|r| {
                view! {
                    <option value=r.number.to_string() selected=r.number == chosen>
                        "r" {r.number} " · " {short_time(&r.created_at)}
                    </option>
                }
            })
            .collect_view()
    };
    let picker = view! {
        <form method="get" action=format!("/patches/{id}/interdiff") class="revision-picker">
            <label>
                "From " <select name="from" id="interdiff-from">{choices(from)}</select>
            </label>
            <label>"to " <select name="to" id="interdiff-to">{choices(to)}</select></label>
            <button type="submit">"Compare"</button>
        </form>
    };
    let rebased = (!d.rebased.is_empty()).then(|| {
        view! {
            <p class="hint" id="interdiff-rebased">
                "These files are patched in different versions by the two revisions (one was rebased), so they are compared by the lines each revision leaves, without the file around them: "
                {d.rebased.iter().map(|p| view! { <span class="mono">{p.clone()} " "</span> }).collect_view()}
            </p>
        }
    });
    let message = (!d.message.is_empty()).then(|| {
        let hunks = d
            .message
            .into_iter()
            .map(|h| {
                let lines = h
                    .lines
                    .into_iter()
                    .map(|l| {
                        let (class, mark) = match l.kind {
                            LineKind::Context => ("code ctx", " "),
                            LineKind::Removed => ("code del", "−"),
                            LineKind::Added => ("code add", "+"),
                        };
                        view! {
                            <tr>
                                <td class="num mono" aria-hidden="true">{mark}</td>
                                <td class=class><pre>{l.text}</pre></td>
                            </tr>
                        }
                    })
                    .collect_view();
                view! { <tbody>{lines}</tbody> }
            })
            .collect_view();
        view! {
            <section class="message-interdiff" id="interdiff-message">
                <h2>"Commit message"</h2>
                <table class="diff unified">{hunks}</table>
            </section>
        }
    });
    view! {
        <div class="page-head">
            <h1>
                <a href=format!("/patches/{id}")>
                    <span class="dim mono">"#" {id} " "</span>
                    {d.info.title.clone()}
                </a>
                ": r" {from} " → r" {to}
            </h1>
        </div>
        {picker}
        <p class="hint">
            "Each file as r" {from} " leaves it (−) against r" {to}
            " (+), in the places either revision changes; line numbers are those of each revision's result. Mail headers, the diffstat and index lines are not compared."
        </p>
        {rebased}
        <ReplaceSets changes=d.replace_sets.clone() from=from to=to/>
        {message}
        {if same {
            view! {
                <p class="empty" id="interdiff-same">
                    "r" {from} " and r" {to} " make the same changes with the same message."
                </p>
            }
                .into_any()
        } else {
            view! {
                <div id="interdiff">
                    <DiffView files=d.files.clone() files_changed=d.files.len() added removed/>
                </div>
            }
                .into_any()
        }}
    }
    .into_any()
}

/// `/audit?actor=&action=&subject=`: the audit trail, filtered.
#[component]
pub fn AuditPage() -> impl IntoView {
    let query = use_query_map();
    let filter = move || {
        let q = query.read();
        AuditFilter {
            actor: q.get("actor").unwrap_or_default(),
            action: q.get("action").unwrap_or_default(),
            subject: q.get("subject").unwrap_or_default(),
        }
    };
    let page = Resource::new(filter, get_audit);
    let reader = Resource::new(|| (), |_| current_user());
    // The export of what the filters select, as a download (the server streams it and
    // records the export in the trail).
    let export_href = move |format: &str| {
        let f = filter();
        let mut href = format!("/api/v1/audit/export?format={format}");
        for (key, value) in [
            ("actor", f.actor),
            ("action", f.action),
            ("subject", f.subject),
        ] {
            if !value.is_empty() {
                href.push_str(&format!("&{key}={}", query_escape(&value)));
            }
        }
        href
    };
    view! {
        <Title text="Audit trail"/>
        <Frame>
            <div class="page-head">
                <h1>"Audit trail"</h1>
                // The exports and the filters only for those who may read the trail: the
                // page below says why the others may not.
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        matches!(reader.await, Ok(Some(ref u)) if u.reads_audit())
                            .then(|| {
                                view! {
                                    <a class="button" id="export-jsonl" href=move || export_href("jsonl")>
                                        "Export JSON Lines"
                                    </a>
                                    <a class="button" id="export-csv" href=move || export_href("csv")>
                                        "Export CSV"
                                    </a>
                                }
                            })
                    })}
                </Suspense>
            </div>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    if !matches!(reader.await, Ok(Some(ref u)) if u.reads_audit()) {
                        return ().into_any();
                    }
                    view! {
                        <Flash/>
                        <form method="get" action="/audit/evidence" class="row filters" id="period-evidence">
                            <label>"From" <input name="from" placeholder="2026-11-01"/></label>
                            <label>"To" <input name="to" placeholder="2026-12-01"/></label>
                            <div>
                                <button type="submit">"Evidence for the period"</button>
                            </div>
                        </form>
                        <form method="get" action="/audit" class="row filters">
                            <label>"Actor" <input name="actor" value=move || filter().actor/></label>
                            <label>
                                "Action" <input name="action" value=move || filter().action placeholder="sign_off."/>
                            </label>
                            <label>
                                "Subject" <input name="subject" value=move || filter().subject placeholder="patch:1"/>
                            </label>
                            <div>
                                <button type="submit">"Filter"</button>
                            </div>
                        </form>
                    }
                        .into_any()
                })}
            </Suspense>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => {
                            let leaves = page.tree_leaves;
                            let chain = match page.broken {
                                None => {
                                    view! {
                                        <p class="notice" id="chain-ok">
                                            "The hash chain verifies: each of the "
                                            {leaves}
                                            " events was checked against the one before it as it entered the trail's Merkle tree. "
                                            <span class="mono">"graftbench audit verify"</span>
                                            " walks the whole chain again."
                                        </p>
                                    }
                                        .into_any()
                                }
                                Some(why) => {
                                    view! { <p class="alert" role="alert" id="chain-broken">{why}</p> }
                                        .into_any()
                                }
                            };
                            let checkpoints = view! { <Checkpoints checkpoints=page.checkpoints/> };
                            let retention = view! {
                                <Retention
                                    online_months=page.online_months
                                    oldest_online=page.oldest_online
                                    segments=page.segments
                                />
                            };
                            let shown = page.events.len();
                            view! {
                                {chain}
                                {checkpoints}
                                {retention}
                                <h2>"Events"</h2>
                                <p class="dim">
                                    {page.matched} " matching event(s)"
                                    {(page.matched > shown as i64)
                                        .then(|| format!(", the newest {shown} shown"))}
                                </p>
                                <table class="listing audit" id="audit-events" tabindex="0" aria-label="Audit events">
                                    <thead>
                                        <tr>
                                            <th class="num">"#"</th>
                                            <th>"Time"</th>
                                            <th>"Actor"</th>
                                            <th>"Action"</th>
                                            <th>"Subject"</th>
                                            <th>"Details"</th>
                                        </tr>
                                    </thead>
                                    <tbody>
                                        {page
                                            .events
                                            .into_iter()
                                            .map(|e| {
                                                view! {
                                                    <tr data-seq=e.seq>
                                                        <td class="num mono" title=e.hash>{e.seq}</td>
                                                        <td class="mono">{e.at}</td>
                                                        <td>{e.actor}</td>
                                                        <td class="mono action">{e.action}</td>
                                                        <td class="mono">{e.subject}</td>
                                                        <td class="mono details">{e.details}</td>
                                                    </tr>
                                                }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            }
                                .into_any()
                        }
                        Err(error) => view! { <ErrorPanel error/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
    .into_any()
}

/// A link to an evidence report, for those who may read the audit trail. The report is
/// a document of its own (not a route of this app): the router leaves it alone.
#[component]
fn EvidenceLink(href: String) -> impl IntoView {
    let user = Resource::new(|| (), |_| current_user());
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let href = href.clone();
                Suspend::new(async move {
                    let reader = matches!(
                        user.await,
                        Ok(Some(ref u)) if u.reads_audit()
                    );
                    reader
                        .then(|| {
                            view! {
                                <a class="button" id="evidence-report" href=href rel="external">
                                    "Evidence report"
                                </a>
                            }
                        })
                })
            }}
        </Suspense>
    }
}

/// The audit page's signed checkpoints: what to copy out of the server's reach.
#[component]
fn Checkpoints(checkpoints: Vec<CheckpointView>) -> impl IntoView {
    let listed = if checkpoints.is_empty() {
        view! { <p class="dim" id="no-checkpoints">"No checkpoint has been signed yet."</p> }
            .into_any()
    } else {
        view! {
            <table class="listing" id="checkpoint-list" tabindex="0" aria-label="Signed checkpoints">
                <thead>
                    <tr>
                        <th class="num">"Events"</th>
                        <th>"Signed"</th>
                        <th>"Root"</th>
                        <th>"Signed note"</th>
                    </tr>
                </thead>
                <tbody>
                    {checkpoints
                        .into_iter()
                        .map(|c| {
                            let href = format!("/api/v1/audit/checkpoints/{}", c.size);
                            view! {
                                <tr data-size=c.size>
                                    <td class="num">{c.size}</td>
                                    <td class="mono">{c.created_at}</td>
                                    <td class="mono">{c.root}</td>
                                    <td>
                                        <a href=href download="">"Download"</a>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section id="checkpoints">
            <h2>"Signed checkpoints"</h2>
            <p class="hint">
                "A checkpoint commits to the first N events (the root of their RFC 6962 Merkle tree) and is signed with this instance's key. Keep copies where nobody with access to this server can change them (a ticket, another system): "
                <span class="mono">"graftbench audit verify --checkpoint FILE --key graftbench-audit.vkey"</span>
                " then finds a trail rewritten or cut short since."
            </p>
            <div class="row">
                <a class="button" id="download-key" href="/api/v1/audit/key" download="">
                    "Download the verifier key"
                </a>
                <form method="post" action="/audit/checkpoints">
                    <button type="submit" id="sign-checkpoint">"Sign a checkpoint now"</button>
                </form>
            </div>
            {listed}
        </section>
    }
}

/// The audit page's retention: how long events stay online, the oldest one still here and
/// the archive segments holding the older ones.
#[component]
fn Retention(
    online_months: u32,
    oldest_online: Option<(i64, String)>,
    segments: Vec<SegmentView>,
) -> impl IntoView {
    let oldest = match oldest_online {
        Some((seq, at)) => view! {
            <p id="oldest-online">
                "Oldest event online: " <span class="mono">"#" {seq}</span> ", recorded "
                <span class="mono">{at}</span> "."
            </p>
        }
        .into_any(),
        None => view! { <p class="dim" id="oldest-online">"No event yet."</p> }.into_any(),
    };
    let listed = if segments.is_empty() {
        view! { <p class="dim" id="no-segments">"No event has been archived yet."</p> }.into_any()
    } else {
        view! {
            <table class="listing" id="archive-segments" tabindex="0" aria-label="Archive segments">
                <thead>
                    <tr>
                        <th class="num">"Events"</th>
                        <th>"Recorded"</th>
                        <th>"SHA-256"</th>
                        <th>"File"</th>
                    </tr>
                </thead>
                <tbody>
                    {segments
                        .into_iter()
                        .map(|s| {
                            let href = format!("/api/v1/audit/segments/{}", s.first_seq);
                            view! {
                                <tr data-first=s.first_seq>
                                    <td class="num mono">
                                        "#" {s.first_seq} "–#" {s.last_seq}
                                    </td>
                                    <td class="mono">{s.first_at} " to " {s.last_at}</td>
                                    <td class="mono hash">{s.sha256}</td>
                                    <td>
                                        <a href=href download="">{s.file}</a>
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        }
        .into_any()
    };
    view! {
        <section id="retention">
            <h2>"Retention"</h2>
            <p class="hint">
                "Events stay online for " {online_months}
                " month(s) (the policy's [audit] online_months), then move into an archive segment: a JSON Lines file with its own signed checkpoint that "
                <span class="mono">"graftbench audit verify --bundle FILE --key graftbench-audit.vkey"</span>
                " checks offline. Nothing is deleted; the online chain continues from the last segment."
            </p>
            {oldest}
            {listed}
        </section>
    }
}

/// `/policy`: the policy in force, read-only.
#[component]
pub fn PolicyPage() -> impl IntoView {
    let policy = Resource::new(|| (), |_| get_policy());
    view! {
        <Title text="Policy"/>
        <Frame>
            <div class="page-head">
                <h1>"Review policy"</h1>
            </div>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match policy.await {
                        Ok(p) => {
                            view! {
                                <p class="hint">
                                    "From " <span class="mono">{p.source}</span>
                                    ". It is read when the server starts; an admin changes it there."
                                </p>
                                <pre class="policy mono" id="policy">{p.toml}</pre>
                            }
                                .into_any()
                        }
                        Err(error) => view! { <ErrorPanel error/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
    .into_any()
}

/// `/admin`: users and their roles (admins).
#[component]
pub fn AdminPage() -> impl IntoView {
    let users = Resource::new(|| (), |_| list_users());
    view! {
        <Title text="Users"/>
        <Frame>
            <div class="page-head">
                <h1>"Users and roles"</h1>
            </div>
            <Flash/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match users.await {
                        Ok(users) => {
                            let rows = users
                                .into_iter()
                                .map(|u| {
                                    let action = format!("/admin/users/{}/roles", u.username);
                                    let disabled = u.disabled_at.is_some();
                                    let toggle = format!(
                                        "/admin/users/{}/{}",
                                        u.username,
                                        if disabled { "enable" } else { "disable" },
                                    );
                                    let confirms = u
                                        .pending_roles
                                        .iter()
                                        .map(|r| {
                                            let to = format!(
                                                "/admin/users/{}/roles/{}/confirm",
                                                u.username,
                                                r.as_str(),
                                            );
                                            view! {
                                                <form method="post" action=to class="inline">
                                                    <button type="submit">
                                                        {format!("Confirm {}", r.label())}
                                                    </button>
                                                </form>
                                            }
                                        })
                                        .collect_view();
                                    let status = match (&u.disabled_at, u.demo) {
                                        (Some(at), _) => format!("disabled {}", short_time(at)),
                                        (None, true) => "demo account".to_owned(),
                                        (None, false) => "active".to_owned(),
                                    };
                                    let boxes = Role::ALL
                                        .into_iter()
                                        .map(|r| {
                                            view! {
                                                <label class="check">
                                                    <input
                                                        type="checkbox"
                                                        name=format!("role_{}", r.as_str())
                                                        checked=u.roles.contains(&r)
                                                            || u.pending_roles.contains(&r)
                                                    />
                                                    {r.label()}
                                                    {u
                                                        .pending_roles
                                                        .contains(&r)
                                                        .then_some(" (waiting)")}
                                                </label>
                                            }
                                        })
                                        .collect_view();
                                    view! {
                                        <tr class:disabled=disabled>
                                            <td class="mono">{u.username.clone()}</td>
                                            <td>{u.display_name.clone()}</td>
                                            <td>
                                                <form method="post" action=action class="roles">
                                                    {boxes}
                                                    <button type="submit">"Save"</button>
                                                </form>
                                                {confirms}
                                            </td>
                                            <td>
                                                <form method="post" action=toggle class="inline">
                                                    {status}
                                                    " "
                                                    <button type="submit">
                                                        {if disabled { "Enable" } else { "Disable" }}
                                                    </button>
                                                </form>
                                            </td>
                                        </tr>
                                    }
                                })
                                .collect_view();
                            view! {
                                <table class="listing">
                                    <thead>
                                        <tr>
                                            <th>"User"</th>
                                            <th>"Name"</th>
                                            <th>"Roles"</th>
                                            <th>"Account"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                                <p class="hint">
                                    "Four eyes: a grant of the reviewer, security officer, release manager or admin role waits until a second admin confirms it, and a role an admin granted or confirmed never approves that admin's own patches (policy "
                                    <code>"role_grants_need_second_admin"</code>
                                    "). With one admin, grant on the server's command line ("
                                    <code>"graftbench user roles NAME --grant ROLE"</code>
                                    "), which is audited."
                                </p>
                                <h2>"New user"</h2>
                                <form method="post" action="/admin/users" class="stack submit">
                                    <div class="row">
                                        <label>"User name" <input name="username" required/></label>
                                        <label>"Display name" <input name="display_name"/></label>
                                        <label>
                                            "Password"
                                            <input
                                                type="password"
                                                name="password"
                                                minlength="10"
                                                autocomplete="new-password"
                                                required
                                            />
                                        </label>
                                    </div>
                                    <div class="roles">
                                        {Role::ALL
                                            .into_iter()
                                            .map(|r| {
                                                view! {
                                                    <label class="check">
                                                        <input type="checkbox" name=format!("role_{}", r.as_str())/>
                                                        {r.label()}
                                                    </label>
                                                }
                                            })
                                            .collect_view()}
                                    </div>
                                    <div>
                                        <button type="submit" class="primary">"Create user"</button>
                                    </div>
                                </form>
                            }
                                .into_any()
                        }
                        Err(error) => view! { <ErrorPanel error/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
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
    .into_any()
}
