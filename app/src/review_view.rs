//! The review side of a patch page: state, eligibility, deadline, sign-offs, the actions
//! the rules offer, line comments and new revisions.
//!
//! Everything here is a plain HTML form that posts to the server and comes back to the
//! page, so it works before (and without) the WASM bundle; the server decides everything
//! again, whatever the page offered.

use crate::model::{
    human_duration, Action, DeadlineView, DraftView, EligibilityView, PitfallView, ReviewView,
    ReviewerView, RevisionSummary, State, ThreadView,
};
use leptos::prelude::*;

/// `2026-11-27T16:05:20.123Z` -> `2026-11-27 16:05 UTC`.
pub fn short_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// A patch's state as a badge.
#[component]
pub fn StateBadge(state: State) -> impl IntoView {
    view! {
        <span class=format!("badge state-{}", state.as_str()) data-state=state.as_str()>
            {state.label()}
        </span>
    }
    .into_any()
}

/// Time left, or overdue, as a badge with the exact deadline on hover.
#[component]
pub fn DeadlineClock(deadline: DeadlineView) -> impl IntoView {
    let overdue = deadline.overdue();
    let text = match deadline.seconds_left {
        Some(left) if left < 0 => format!("overdue by {}", human_duration(left)),
        Some(left) => format!("due in {}", human_duration(left)),
        None => "closed".to_owned(),
    };
    let title = format!(
        "{} change: reported {}, due {}",
        deadline.tier.as_str(),
        short_time(&deadline.reported_at),
        short_time(&deadline.due_at)
    );
    view! {
        <span class="clock" class:overdue=overdue title=title data-due=deadline.due_at.clone()>
            <span class=format!("tier tier-{}", deadline.tier.as_str())>
                {deadline.tier.as_str()}
            </span>
            " "
            {text}
        </span>
    }
    .into_any()
}

/// Eligible or not, with the CVSS score and the reasons.
#[component]
pub fn EligibilityBadge(eligibility: EligibilityView) -> impl IntoView {
    let score = eligibility.cvss.as_ref().map(|c| {
        view! {
            <span class=format!("cvss sev-{}", c.severity) title=c.vector.clone()>
                "CVSS " {c.version.clone()} " " {format!("{:.1}", c.score)} " " {c.severity.clone()}
            </span>
        }
    });
    let (class, text) = if eligibility.eligible {
        ("badge eligible", "eligible for live patching")
    } else {
        ("badge not-eligible", "not eligible")
    };
    view! {
        <div class="eligibility" id="eligibility">
            <span class=class>{text}</span>
            " "
            {score}
            <span class="dim">" " {eligibility.category.label()}</span>
            <ul class="reasons">
                {eligibility.reasons.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}
            </ul>
        </div>
    }
    .into_any()
}

/// The review around the code: a compact header (state, counts, deadline, eligibility,
/// the actions the user may take) above `children` (the diff), and the rest (pitfalls,
/// sign-offs, threads on other revisions, a new revision) below it. Code first: at
/// 1440x900 the diff starts on the first screen.
#[component]
pub fn ReviewPanel(
    patch: i64,
    review: ReviewView,
    shown_revision: i64,
    revisions: Vec<RevisionSummary>,
    error: Option<String>,
    /// The analyses' pitfalls on the shown revision.
    #[prop(optional)]
    pitfalls: Vec<PitfallView>,
    /// What the review is of: the diff (and the graph).
    children: Children,
) -> impl IntoView {
    let ReviewView {
        state,
        current_revision,
        current_sha256,
        approvals,
        approvals_required,
        eligibility,
        deadline,
        sign_offs,
        threads,
        actions,
        requested,
        request_candidates,
        can_request_reviewers,
        drafts,
    } = review;
    let offers = |a: Action| actions.contains(&a);
    let buttons: Vec<Action> = actions
        .iter()
        .copied()
        .filter(|a| !matches!(a, Action::Comment | Action::UploadRevision))
        .collect();
    let on_current = shown_revision == current_revision;
    let action_form = (!buttons.is_empty()).then(|| {
        let note = (!on_current).then(|| {
            view! {
                <p class="notice">
                    "You are reading revision " {shown_revision} ". Sign-offs are for revision "
                    {current_revision} ", the current one."
                </p>
            }
        });
        view! {
            <form method="post" action=format!("/patches/{patch}/actions") class="stack actions">
                {note}
                <input type="hidden" name="revision_sha256" value=current_sha256.clone()/>
                <label>
                    <span>
                        "Comment"
                        <span class="hint">
                            " (required to reject, decline or sign off an exception)"
                        </span>
                    </span>
                    <textarea name="comment" rows="1"></textarea>
                </label>
                <div class="buttons">
                    {buttons
                        .into_iter()
                        .map(|a| {
                            let class = match a {
                                Action::Approve | Action::Submit => "primary",
                                Action::Reject | Action::Decline => "danger",
                                _ => "",
                            };
                            view! {
                                <button
                                    type="submit"
                                    name="action"
                                    value=a.as_str()
                                    class=class
                                    id=format!("action-{}", a.as_str())
                                >
                                    {a.label()}
                                </button>
                            }
                        })
                        .collect_view()}
                </div>
            </form>
        }
    });
    let sign_off_rows = sign_offs
        .into_iter()
        .map(|s| {
            let superseded = s.withdrawn_at.is_some();
            view! {
                <li class:outdated=s.outdated class:withdrawn=superseded class="sign-off">
                    <span class=format!("verdict verdict-{}", s.verdict)>{s.verdict.as_str()}</span>
                    " "
                    <strong>{s.user}</strong>
                    " on r"
                    {s.revision}
                    <span class="mono dim" title=s.revision_sha256.clone()>
                        " " {s.revision_sha256.get(..12).unwrap_or_default().to_owned()}
                    </span>
                    " · "
                    <span class="dim">{short_time(&s.created_at)}</span>
                    {s.outdated.then(|| view! { <span class="tag">"outdated"</span> })}
                    {superseded.then(|| view! { <span class="tag">"withdrawn"</span> })}
                    {(!s.comment.is_empty()).then(|| view! { <p class="comment">{s.comment}</p> })}
                </li>
            }
        })
        .collect_view();
    let can_comment = offers(Action::Comment);
    let publishes_drafts = [Action::Approve, Action::Reject, Action::SignException]
        .iter()
        .any(|a| offers(*a));
    let drafts_box =
        (!drafts.is_empty()).then(|| drafts_list(patch, &drafts, can_comment, publishes_drafts));
    let unresolved = threads.iter().filter(|t| t.resolved.is_none()).count();
    // The shown revision's threads, and those of other revisions whose lines it shows,
    // are under their lines in the diff; the outdated rest here.
    let elsewhere: Vec<ThreadView> = threads
        .into_iter()
        .filter(|t| t.revision != shown_revision && t.shown_at.is_none())
        .collect();
    let upload = offers(Action::UploadRevision).then(|| {
        view! {
            <details class="upload">
                <summary>"Upload a new revision"</summary>
                <form
                    method="post"
                    action=format!("/patches/{patch}/revisions")
                    enctype="multipart/form-data"
                    class="stack"
                >
                    <label>
                        "The whole fix again, as a diff or mail"
                        <textarea name="diff" rows="10" class="mono" spellcheck="false"></textarea>
                    </label>
                    <label>
                        "…or upload it" <input type="file" name="diff_file"/>
                    </label>
                    <div>
                        <button type="submit" class="primary">"Upload revision"</button>
                    </div>
                </form>
            </details>
        }
    });
    let interdiff = (revisions.len() > 1).then(|| {
        let to = current_revision;
        let from = to - 1;
        view! {
            <a class="button" href=format!("/patches/{patch}/interdiff?from={from}&to={to}")>
                "What changed in r" {to}
            </a>
        }
    });
    view! {
        <section class="review review-bar" id="review">
            {error.map(|e| view! { <p class="alert" role="alert" id="review-error">{e}</p> })}
            <div class="review-head">
                <StateBadge state/>
                {(unresolved > 0)
                    .then(|| {
                        view! {
                            <a class="tag unresolved" href="#comments" id="unresolved">
                                {unresolved}
                                {if unresolved == 1 { " unresolved thread" } else { " unresolved threads" }}
                            </a>
                        }
                    })}
                <span class="approvals" id="approvals">
                    {approvals} " of " {approvals_required} " approvals on r" {current_revision}
                </span>
                <DeadlineClock deadline/>
                {interdiff}
            </div>
            <EligibilityBadge eligibility/>
            {drafts_box}
            {action_form}
        </section>
        {children()}
        <section class="review review-more" id="review-more">
            <PitfallList pitfalls/>
            <h2>"Sign-offs"</h2>
            <ul class="sign-offs" id="sign-offs">{sign_off_rows}</ul>
            <Reviewers patch requested candidates=request_candidates can_request=can_request_reviewers/>
            <h2 id="comments">"Outdated line comments"</h2>
            <Threads patch threads=elsewhere can_comment shown_revision drafts/>
            {upload}
        </section>
    }
    .into_any()
}

/// The reviewers asked for, and (for those the rules let ask) the form to ask another or
/// stop asking one.
#[component]
fn Reviewers(
    patch: i64,
    requested: Vec<ReviewerView>,
    candidates: Vec<ReviewerView>,
    can_request: bool,
) -> impl IntoView {
    if requested.is_empty() && !can_request {
        return ().into_any();
    }
    let action = format!("/patches/{patch}/reviewers");
    let rows = requested
        .into_iter()
        .map(|r| {
            let cancel = can_request.then(|| {
                view! {
                    <form method="post" action=action.clone() class="inline">
                        <input type="hidden" name="reviewer" value=r.username.clone()/>
                        <button type="submit" name="verb" value="cancel" class="link">
                            "stop asking"
                        </button>
                    </form>
                }
            });
            view! {
                <li data-reviewer=r.username.clone()>
                    <strong>{r.display_name}</strong>
                    <span class="dim">" asked by " {r.requested_by}</span>
                    {if r.signed_current {
                        view! { <span class="tag">"signed off"</span> }.into_any()
                    } else {
                        view! { <span class="tag unresolved">"waiting"</span> }.into_any()
                    }}
                    " "
                    {cancel}
                </li>
            }
        })
        .collect_view();
    let ask = (can_request && !candidates.is_empty()).then(|| {
        view! {
            <form method="post" action=action.clone() class="row ask-reviewer">
                <label>
                    "Ask for a review by "
                    <select name="reviewer" id="ask-reviewer">
                        {candidates
                            .into_iter()
                            .map(|c| {
                                let label = format!("{} ({})", c.display_name, c.username);
                                view! { <option value=c.username>{label}</option> }
                            })
                            .collect_view()}
                    </select>
                </label>
                <button type="submit" name="verb" value="ask">"Ask"</button>
            </form>
        }
    });
    view! {
        <h2 id="reviewers">"Reviewers asked"</h2>
        <ul class="reviewers">{rows}</ul>
        {ask}
    }
    .into_any()
}

/// The pitfalls the analyses found, each linking to its line.
#[component]
fn PitfallList(pitfalls: Vec<PitfallView>) -> impl IntoView {
    if pitfalls.is_empty() {
        return ().into_any();
    }
    let open = pitfalls.iter().filter(|p| p.considered.is_empty()).count();
    let items = pitfalls
        .into_iter()
        .map(|p| {
            let (_, line) = p.anchor_line();
            let done = !p.considered.is_empty();
            view! {
                <li class:considered=done>
                    <a href=format!("#{}", p.anchor)>{p.guide_title.clone()}</a>
                    " "
                    <span class="mono dim">{format!("{}:{line}", p.path)}</span>
                    {done.then(|| view! { <span class="tag">"considered"</span> })}
                </li>
            }
        })
        .collect_view();
    view! {
        <h2 id="pitfalls">"Pitfalls" <span class="dim">{format!(" ({open} not yet considered)")}</span></h2>
        <ul class="pitfall-list">{items}</ul>
    }
    .into_any()
}

/// The comment threads of other revisions whose lines the shown one does not show.
#[component]
fn Threads(
    patch: i64,
    threads: Vec<ThreadView>,
    can_comment: bool,
    shown_revision: i64,
    /// The user's drafts: replies to these threads show in them.
    drafts: Vec<DraftView>,
) -> impl IntoView {
    if threads.is_empty() {
        return view! {
            <p class="empty">"None: every thread is under its line in r" {shown_revision} "."</p>
        }
        .into_any();
    }
    threads
        .into_iter()
        .map(|t| {
            let replies = replies_to(t.id, &drafts);
            thread_body(t, can_comment.then_some(patch), (patch, replies))
        })
        .collect_view()
        .into_any()
}

/// The user's drafts that reply to thread `thread`.
pub(crate) fn replies_to(thread: i64, drafts: &[DraftView]) -> Vec<DraftView> {
    drafts
        .iter()
        .filter(|d| d.thread == Some(thread))
        .cloned()
        .collect()
}

/// The user's drafts in the review header: how many, when they go out, a button to
/// publish them now, and each with a link to its line and a button to discard it.
fn drafts_list(
    patch: i64,
    drafts: &[DraftView],
    can_comment: bool,
    with_verdict: bool,
) -> impl IntoView {
    let count = drafts.len();
    let items = drafts
        .iter()
        .map(|d| {
            let href = format!(
                "/patches/{patch}?rev={}#{}",
                d.revision,
                d.thread.map_or_else(
                    || format!("draft-{}", d.id),
                    |thread| format!("thread-{thread}")
                ),
            );
            let excerpt: String = d.body.chars().take(80).collect();
            view! {
                <li id=format!("draft-item-{}", d.id)>
                    <a href=href class="mono">
                        "r" {d.revision} " " {d.path.clone()} ":" {d.line}
                    </a>
                    {d.thread.map(|_| view! { <span class="tag">"reply"</span> })}
                    " " <span class="excerpt">{excerpt}</span>
                    <form method="post" action=format!("/patches/{patch}/drafts/{}/discard", d.id)>
                        <button type="submit" class="link">"Discard"</button>
                    </form>
                </li>
            }
        })
        .collect_view();
    let publish = can_comment.then(|| {
        view! {
            <form method="post" action=format!("/patches/{patch}/drafts/publish")>
                <button type="submit" id="publish-drafts">
                    {if with_verdict { "Publish without a verdict" } else { "Publish" }}
                </button>
            </form>
        }
    });
    view! {
        <details class="drafts" id="drafts">
            <summary>
                <strong>{count} {if count == 1 { " draft" } else { " drafts" }}</strong>
                " only you can see"
                {with_verdict.then_some(": published with your verdict")}
            </summary>
            <ul>{items}</ul>
            {publish}
        </details>
    }
}

/// One draft: a new thread's (`class` `thread draft`) or a reply's (`comment draft`),
/// with the button that discards it.
pub(crate) fn draft_body(d: DraftView, patch: i64, class: &'static str) -> AnyView {
    view! {
        <div class=class id=format!("draft-{}", d.id)>
            <span class="tag">"Draft"</span>
            <span class="dim">" only you can see this until you publish it"</span>
            <p>{d.body}</p>
            <form method="post" action=format!("/patches/{patch}/drafts/{}/discard", d.id)>
                <button type="submit" class="link">"Discard"</button>
            </form>
        </div>
    }
    .into_any()
}

/// One thread: where it is, its comments, the user's drafts replying to it, and (given
/// the patch, for those who may comment) the reply and resolve forms.
pub(crate) fn thread_body(
    t: ThreadView,
    patch: Option<i64>,
    (draft_patch, replies): (i64, Vec<DraftView>),
) -> AnyView {
    let resolved = t.resolved.clone();
    let is_resolved = resolved.is_some();
    let verb = if resolved.is_some() {
        "reopen"
    } else {
        "resolve"
    };
    let anchor = format!("thread-{}", t.id);
    let controls = patch.map(|patch| {
        view! {
            <form method="post" action=format!("/patches/{patch}/comments") class="reply">
                <input type="hidden" name="thread" value=t.id.to_string()/>
                <input type="hidden" name="revision" value=t.revision.to_string()/>
                <input name="body" placeholder="Reply" aria-label="Reply" required/>
                <button type="submit">"Reply"</button>
                <button type="submit" name="draft" value="1">"Save draft"</button>
            </form>
            <form
                method="post"
                action=format!("/patches/{patch}/comments/{}/{verb}", t.id)
                class="resolve"
            >
                <button type="submit" class="link">
                    {if verb == "resolve" { "Resolve" } else { "Reopen" }}
                </button>
            </form>
        }
    });
    view! {
        <div class="thread" class:resolved=is_resolved id=anchor>
            <div class="thread-anchor mono">
                <a href=format!(
                    "?rev={}#{}",
                    t.revision,
                    crate::diff_view::LineTarget::anchor(&t.path, t.side == "new", t.line),
                )>"r" {t.revision} " " {t.path.clone()} " · " {t.side.clone()} " line " {t.line}</a>
                {t
                    .shown_at
                    .is_some()
                    .then(|| {
                        view! {
                            <span class="tag" title="A thread of another revision, on the line it maps to here">
                                "from r" {t.revision}
                            </span>
                        }
                    })}
                {resolved
                    .map(|(who, at)| {
                        view! {
                            <span class="tag">
                                "resolved by " {who} " " {short_time(&at)}
                            </span>
                        }
                    })}
            </div>
            {t
                .comments
                .into_iter()
                .map(|c| {
                    view! {
                        <div class="comment">
                            <strong>{c.author}</strong>
                            <span class="dim">" " {short_time(&c.created_at)}</span>
                            <p>{c.body}</p>
                        </div>
                    }
                })
                .collect_view()}
            {replies
                .into_iter()
                .map(|d| draft_body(d, draft_patch, "comment draft"))
                .collect_view()}
            {controls}
        </div>
    }
    .into_any()
}
