//! `/targets` and `/targets/{name}`: the kernel builds fixes are analysed for, their
//! registration and index jobs, and those jobs' progress live (server-sent events from
//! `/api/v1/jobs/{id}/events` once the page is hydrated; without JavaScript the page
//! shows the progress as of its rendering).

use crate::api::{flash_message, get_target, list_targets};
use crate::model::{AppError, JobSummary, TargetSummary};
use crate::pages::{ErrorPanel, Frame};
use crate::review_view::short_time;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

/// Bytes for people: `8.3 MB`.
fn size(bytes: i64) -> String {
    let bytes = bytes.max(0) as f64;
    if bytes >= 1e9 {
        format!("{:.1} GB", bytes / 1e9)
    } else if bytes >= 1e6 {
        format!("{:.1} MB", bytes / 1e6)
    } else if bytes >= 1e3 {
        format!("{:.1} kB", bytes / 1e3)
    } else {
        format!("{bytes} B")
    }
}

/// The compiler's name and version from DW_AT_producer (`GNU C11 12.2.0 -mno-sse ...`
/// is `GNU C11 12.2.0`); the whole string is in the title.
fn compiler_version(producer: &str) -> String {
    producer
        .split(" -")
        .next()
        .unwrap_or(producer)
        .chars()
        .take(80)
        .collect()
}

/// The flash message a refused form left, if any.
#[component]
pub(crate) fn Flash() -> impl IntoView {
    let flash = Resource::new(|| (), |_| flash_message());
    view! {
        <Suspense>
            {move || Suspend::new(async move {
                flash
                    .await
                    .ok()
                    .flatten()
                    .map(|e| view! { <p class="alert" role="alert">{e}</p> })
            })}
        </Suspense>
    }
    .into_any()
}

/// A job's state and progress bar, kept current from its event stream while it runs.
#[component]
pub fn JobProgress(
    job: JobSummary,
    /// Told when the job finishes while the page follows it.
    #[prop(optional)]
    on_finished: Option<Callback<()>>,
) -> impl IntoView {
    let current = RwSignal::new(job);
    #[cfg(all(feature = "hydrate", target_arch = "wasm32"))]
    follow(current, on_finished);
    #[cfg(not(all(feature = "hydrate", target_arch = "wasm32")))]
    let _ = on_finished;
    view! {
        {move || {
            let job = current.get();
            let percent = (job.progress * 100.0).round() as i64;
            let status = match job.state.as_str() {
                "running" if !job.phase.is_empty() => format!("{}: {percent}%", job.phase),
                "running" => "running".to_owned(),
                "queued" if job.attempts > 0 => {
                    format!("waiting to retry (attempt {} of {})", job.attempts, job.max_attempts)
                }
                "failed" => format!("failed after {} attempt(s)", job.attempts),
                other => other.to_owned(),
            };
            view! {
                <div class="job" data-job=job.id data-state=job.state.clone()>
                    <span class="job-label">{job.label.clone()}</span>
                    <progress max="100" value=percent aria-label=job.label.clone()>
                        {format!("{percent}%")}
                    </progress>
                    <span class="job-status" role="status">{status}</span>
                    {job.error.clone().map(|e| view! { <p class="job-error">{e}</p> })}
                </div>
            }
        }}
    }
    .into_any()
}

/// Follows a running job's server-sent events into `current` (in the browser only).
#[cfg(all(feature = "hydrate", target_arch = "wasm32"))]
fn follow(current: RwSignal<JobSummary>, on_finished: Option<Callback<()>>) {
    use leptos::wasm_bindgen::closure::Closure;
    use leptos::wasm_bindgen::JsCast;
    let job = current.get_untracked();
    if !job.is_active() {
        return;
    }
    let Ok(source) = web_sys::EventSource::new(&format!("/api/v1/jobs/{}/events", job.id)) else {
        return;
    };
    let stream = source.clone();
    let on_job =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            // Read with the browser's JSON parser: no JSON crate in the bundle for six fields.
            use web_sys::js_sys::{Reflect, JSON};
            let Some(update) = event
                .data()
                .as_string()
                .and_then(|text| JSON::parse(&text).ok())
            else {
                return;
            };
            let field = |name: &str| Reflect::get(&update, &name.into()).ok();
            let text = |name: &str| field(name).and_then(|v| v.as_string());
            let number = |name: &str| field(name).and_then(|v| v.as_f64());
            let previous = current.get_untracked();
            let next = JobSummary {
                state: text("state").unwrap_or(previous.state),
                phase: text("phase").unwrap_or(previous.phase),
                progress: number("progress").unwrap_or(previous.progress),
                attempts: number("attempts").map_or(previous.attempts, |n| n as i64),
                error: text("error"),
                updated_at: text("updated_at").unwrap_or(previous.updated_at),
                ..previous
            };
            let finished = !next.is_active();
            if finished {
                stream.close();
            }
            current.set(next);
            if let (true, Some(callback)) = (finished, on_finished) {
                callback.run(());
            }
        });
    let _ = source.add_event_listener_with_callback("job", on_job.as_ref().unchecked_ref());
    // The listener lives as long as the page.
    on_job.forget();
}

#[component]
fn TargetRow(target: TargetSummary) -> impl IntoView {
    let href = format!("/targets/{}", target.name);
    let retired = target.retired_at.is_some();
    view! {
        <tr class:retired=retired>
            <td>
                <a href=href class="mono">{target.name.clone()}</a>
            </td>
            <td class="mono">{target.kernel_release.clone()}</td>
            <td>{if target.origin == "debian" { "Debian" } else { "in-house" }}</td>
            <td class="num">{target.functions}</td>
            <td class="num">{target.analyses}</td>
            <td>{if retired { "retired" } else { "active" }}</td>
        </tr>
    }
    .into_any()
}

#[component]
fn AddTargetForm(target_root: Option<String>) -> impl IntoView {
    let paths = target_root.map(|root| {
        view! {
            <fieldset>
                <legend>"An in-house build"</legend>
                <p class="hint">{format!("Paths under the target root {root}.")}</p>
                <label>"vmlinux (with debug information)" <input name="vmlinux" type="text"/></label>
                <label>"Modules directory (optional)" <input name="modules_dir" type="text"/></label>
                <label>"Kbuild directory (optional)" <input name="kbuild_dir" type="text"/></label>
                <label>"Source tree (optional)" <input name="source_dir" type="text"/></label>
                <label>
                    "Kernel release (when the image has no banner)"
                    <input name="kernel_release" type="text"/>
                </label>
            </fieldset>
        }
    });
    view! {
        <form method="post" action="/targets" class="card add-target">
            <h2>"Add a target"</h2>
            <fieldset>
                <legend>"A Debian build"</legend>
                <label>
                    "Kernel release"
                    <input name="release" type="text" placeholder="6.1.0-56-cloud-amd64"/>
                </label>
                <label class="check">
                    <input type="checkbox" name="with_source" value="1"/>
                    "Also fetch its source package (about 140 MB; needed to map fixes written against other trees)"
                </label>
            </fieldset>
            {paths}
            <label>"Name (default: the release)" <input name="name" type="text"/></label>
            <button type="submit" class="primary">"Register"</button>
        </form>
    }
    .into_any()
}

/// `/targets`.
#[component]
pub fn TargetsPage() -> impl IntoView {
    let page = Resource::new(|| (), |_| list_targets());
    view! {
        <Title text="Kernel targets"/>
        <Frame>
            <div class="page-head">
                <h1>"Kernel targets"</h1>
            </div>
            <Flash/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(data) => {
                            let registrations = (!data.registrations.is_empty())
                                .then(|| {
                                    let jobs = data
                                        .registrations
                                        .into_iter()
                                        .map(|job| view! { <JobProgress job/> })
                                        .collect_view();
                                    view! {
                                        <section class="card">
                                            <h2>"Registrations"</h2>
                                            {jobs}
                                        </section>
                                    }
                                });
                            let rows = data
                                .targets
                                .into_iter()
                                .map(|target| view! { <TargetRow target/> })
                                .collect_view();
                            let form = data
                                .can_manage
                                .then(|| view! { <AddTargetForm target_root=data.target_root/> });
                            view! {
                                {registrations}
                                <table class="listing targets" tabindex="0" aria-label="Kernel targets">
                                    <thead>
                                        <tr>
                                            <th>"Name"</th>
                                            <th>"Release"</th>
                                            <th>"From"</th>
                                            <th class="num">"Functions"</th>
                                            <th class="num">"Analyses"</th>
                                            <th>"State"</th>
                                        </tr>
                                    </thead>
                                    <tbody>{rows}</tbody>
                                </table>
                                {form}
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

/// `/targets/{name}`.
#[component]
pub fn TargetPage() -> impl IntoView {
    let params = use_params_map();
    let page = Resource::new(
        move || params.read().get("name").unwrap_or_default(),
        |name| async move {
            if name.is_empty() {
                return Err(AppError::NotFound("target".into()));
            }
            get_target(name).await
        },
    );
    view! {
        <Frame>
            <Flash/>
            <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(data) => {
                            let t = data.target;
                            let manage = (data.can_manage && t.retired_at.is_none())
                                .then(|| {
                                    let reindex = format!("/targets/{}/reindex", t.id);
                                    let retire = format!("/targets/{}/retire", t.id);
                                    view! {
                                        <div class="actions">
                                            <form method="post" action=reindex class="inline">
                                                <button type="submit">"Rebuild the index"</button>
                                            </form>
                                            <form method="post" action=retire class="inline">
                                                <button type="submit">"Retire"</button>
                                            </form>
                                        </div>
                                    }
                                });
                            let jobs = data
                                .jobs
                                .into_iter()
                                .map(|job| view! { <JobProgress job/> })
                                .collect_view();
                            let dir = |d: Option<String>| {
                                d.unwrap_or_else(|| "not registered".to_owned())
                            };
                            let state = match &t.retired_at {
                                Some(at) => format!("retired {}", short_time(at)),
                                None => "active".to_owned(),
                            };
                            view! {
                                <Title text=t.name.clone()/>
                                <div class="page-head">
                                    <h1 class="mono">{t.name.clone()}</h1>
                                    {manage}
                                </div>
                                <dl class="facts target-facts">
                                    <dt>"State"</dt>
                                    <dd>{state}</dd>
                                    <dt>"Release"</dt>
                                    <dd class="mono">{t.kernel_release.clone()}</dd>
                                    <dt>"From"</dt>
                                    <dd>
                                        {if t.origin == "debian" {
                                            format!("Debian, package version {}", t.package_version)
                                        } else {
                                            "an in-house build".to_owned()
                                        }}
                                    </dd>
                                    <dt>"Architecture"</dt>
                                    <dd>{t.arch.clone()}</dd>
                                    <dt>"GNU build-id"</dt>
                                    <dd class="mono" data-fact="build_id">{t.build_id.clone()}</dd>
                                    <dt>"Compiler"</dt>
                                    <dd title=t.compiler.clone()>{compiler_version(&t.compiler)}</dd>
                                    <dt>"Index"</dt>
                                    <dd>
                                        {format!(
                                            "{}, {} object(s), built {}",
                                            size(t.index_bytes),
                                            t.objects,
                                            short_time(&t.indexed_at),
                                        )}
                                    </dd>
                                    <dt>"Functions"</dt>
                                    <dd data-fact="functions">{t.functions}</dd>
                                    <dt>"Inline sites"</dt>
                                    <dd data-fact="inline_sites">{t.inline_sites}</dd>
                                    <dt>"Clones"</dt>
                                    <dd data-fact="clones">{t.clones}</dd>
                                    <dt>"Kbuild directory"</dt>
                                    <dd class="mono">{dir(t.kbuild_dir.clone())}</dd>
                                    <dt>"Source tree"</dt>
                                    <dd class="mono">{dir(t.source_dir.clone())}</dd>
                                    <dt>"Disk used"</dt>
                                    <dd>
                                        {size(t.disk_bytes)}
                                        {(t.origin == "debian")
                                            .then_some(
                                                " (besides the files it shares with the download cache)",
                                            )}
                                    </dd>
                                    <dt>"Analyses"</dt>
                                    <dd>{t.analyses}</dd>
                                    <dt>"Registered"</dt>
                                    <dd>{format!("{} by {}", short_time(&t.created_at), t.created_by)}</dd>
                                </dl>
                                <section class="card">
                                    <h2>"Jobs"</h2>
                                    {jobs}
                                </section>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <Title text="Target"/>
                                <ErrorPanel error/>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </Frame>
    }
    .into_any()
}
