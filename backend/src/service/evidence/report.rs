//! The evidence report: one self-contained HTML document (its style inline, no script),
//! printable to PDF from the browser. The same document is the page the server shows and
//! the `report.html` of a bundle. Every text from users is escaped by maud.

use super::{PatchEvidence, Scope, SECTIONS};
use graftbench_domain::audit::AuditEvent;
use maud::{html, Markup, DOCTYPE};

/// The most events the report lists one by one; beyond, it counts them and points to
/// the events file.
pub const EVENTS_SHOWN: usize = 1_000;

/// What the report shows.
pub struct Report<'a> {
    /// What it covers.
    pub scope: &'a Scope,
    /// The instance.
    pub source: &'a str,
    /// Who asked for it.
    pub exported_by: &'a str,
    /// When.
    pub extracted_at: &'a str,
    /// The checkpoint the events are proved to (size, root; the root may be empty).
    pub checkpoint: Option<(i64, &'a str)>,
    /// Every patch covered.
    pub patches: &'a [PatchEvidence],
    /// The events, when there are at most [`EVENTS_SHOWN`].
    pub events: &'a [AuditEvent],
    /// How many events are in scope.
    pub event_count: u64,
    /// In a bundle (no download link) or a page.
    pub bundle: bool,
}

/// The inline style (its hash is the page's only style source).
pub const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#1f2328;max-width:1100px;\
margin:2rem auto;padding:0 1rem}h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid \
#d0d7de;padding-bottom:.2rem;margin-top:2rem}h3{font-size:1.05rem}table{border-collapse:collapse;\
width:100%;margin:.5rem 0 1rem}th,td{border:1px solid #d0d7de;padding:.3rem .45rem;text-align:left;\
vertical-align:top}th{background:#f6f8fa}.mono{font-family:ui-monospace,monospace;font-size:12px;\
word-break:break-all}.met{color:#116329}.missed,.overdue{color:#a40e26}.none{color:#57606a}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}\
dd{margin:0}a{color:#0550ae}@media print{a[href]{color:inherit;text-decoration:none}\
.screen{display:none}h2{break-after:avoid}tr{break-inside:avoid}}";

/// The Content-Security-Policy the page is served with: its one inline style, nothing
/// else.
pub fn content_security_policy() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

fn title(scope: &Scope, patches: &[PatchEvidence]) -> String {
    match scope {
        Scope::Patch(id) => format!(
            "Evidence: patch #{id}, {}",
            patches.first().map_or("", |p| p.info.title.as_str())
        ),
        Scope::Period { from, to } => format!(
            "Evidence: changes from {} to {}",
            if from.is_empty() {
                "the first event"
            } else {
                from
            },
            if to.is_empty() { "now" } else { to }
        ),
    }
}

fn download_href(scope: &Scope) -> String {
    match scope {
        Scope::Patch(id) => format!("/api/v1/patches/{id}/evidence"),
        Scope::Period { from, to } => {
            let mut href = "/api/v1/audit/evidence?".to_owned();
            href.push_str(&format!("from={}&to={}", query(from), query(to)));
            href
        }
    }
}

fn query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The report as a complete HTML document.
pub fn render(report: &Report<'_>) -> String {
    let heading = title(report.scope, report.patches);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (heading) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                h1 { (heading) }
                @if !report.bundle {
                    p.screen {
                        a id="download-bundle" href=(download_href(report.scope)) {
                            "Download the evidence bundle"
                        }
                        " (a tar archive with this report, every revision, the events with their inclusion proofs and a seal; "
                        "check it offline with "
                        code { "graftbench audit verify --bundle FILE --key graftbench-audit.vkey" }
                        "). Print this page to save it as PDF."
                    }
                }
                (about(report))
                (controls())
                @if let Scope::Period { .. } = report.scope {
                    (population(report.patches))
                }
                @for patch in report.patches {
                    (patch_section(patch))
                }
                (events(report))
                h2 id="verify" { "How to check this evidence" }
                p {
                    "The bundle's " code { "seal.json" } " is the audit event that recorded its export, naming the SHA-256 of every byte before it, "
                    "with an inclusion proof into a checkpoint signed by the instance's key. Every event in "
                    code { "events.jsonl" } " carries its inclusion proof into the checkpoint in " code { "checkpoint.txt" } ". "
                    "With the verifier key obtained from the instance beforehand (audit page, or " code { "graftbench audit key" } "):"
                }
                pre.mono { "graftbench audit verify --bundle BUNDLE.tar --key graftbench-audit.vkey" }
                p { "It needs no database and no network, and names every byte that does not check." }
            }
        }
    }
    .into_string()
}

fn about(report: &Report<'_>) -> Markup {
    html! {
        h2 id="about" { "About this evidence" }
        dl {
            dt { "Source" } dd.mono { (report.source) }
            dt { "Exported by" } dd { (report.exported_by) }
            dt { "Extracted at" } dd.mono { (report.extracted_at) }
            dt { "Scope" } dd {
                @match report.scope {
                    Scope::Patch(id) => { "patch #" (id) }
                    Scope::Period { from, to } => {
                        "every change with an audit event from "
                        span.mono { @if from.is_empty() { "the first event" } @else { (from) } }
                        " to "
                        span.mono { @if to.is_empty() { "now" } @else { (to) } }
                        " (" (report.patches.len()) " change(s))"
                    }
                }
            }
            dt { "Audit events" } dd { (report.event_count) }
            dt { "Checkpoint" } dd {
                @match report.checkpoint {
                    Some((size, root)) => {
                        "the trail's first " (size) " event(s)"
                        @if !root.is_empty() { ", root " span.mono { (root) } }
                    }
                    None => span.none { "none signed yet" },
                }
            }
        }
    }
}

fn controls() -> Markup {
    html! {
        h2 id="controls" { "Control mapping" }
        table id="control-mapping" {
            thead { tr {
                th { "Evidence" } th { "What it shows" } th { "PCI DSS v4.0.1" }
                th { "ISO/IEC 27001:2022" } th { "Here" }
            } }
            tbody {
                @for section in SECTIONS {
                    tr data-section=(section.name) {
                        td { (section.title) }
                        td { (section.shows) }
                        td { @for (i, r) in section.pci_dss.iter().enumerate() { @if i > 0 { br; } (r) } }
                        td { @for (i, c) in section.iso_27001.iter().enumerate() { @if i > 0 { br; } (c) } }
                        td {
                            @match section.later {
                                Some(later) => span.none { "none yet: " (later) " will add it" },
                                None => "included",
                            }
                        }
                    }
                }
            }
        }
    }
}

fn population(patches: &[PatchEvidence]) -> Markup {
    html! {
        h2 id="population" { "Population: every change in the period" }
        table id="population-list" {
            thead { tr {
                th { "Patch" } th { "Title" } th { "State" } th { "Tier" } th { "Deadline" }
                th { "Approvals" }
            } }
            tbody {
                @for p in patches {
                    tr {
                        td { a href=(format!("#patch-{}", p.info.id)) { "#" (p.info.id) } }
                        td { (p.info.title) }
                        td { (p.state.label()) }
                        td { (p.timeliness.tier.as_str()) }
                        td class=(p.timeliness.outcome) { (p.timeliness.outcome) }
                        td { (p.approvals) " of " (p.approvals_required) }
                    }
                }
            }
        }
    }
}

fn patch_section(p: &PatchEvidence) -> Markup {
    let id = p.info.id;
    html! {
        h2 id=(format!("patch-{id}")) { "Patch #" (id) ": " (p.info.title) }
        dl {
            dt { "Author" } dd { (p.info.author) }
            dt { "Submitted" } dd.mono { (p.info.created_at) }
            dt { "CVE" } dd { @if p.info.cves.is_empty() { span.none { "none named" } } @else { (p.info.cves.join(", ")) } }
            dt { "State" } dd { (p.state.label()) ", " (p.approvals) " of " (p.approvals_required) " approvals on the current revision" }
        }
        h3 { "The change and its revisions" }
        table {
            thead { tr { th { "Revision" } th { "SHA-256" } th { "Submitted by" } th { "At" } } }
            tbody {
                @for r in &p.revisions {
                    tr { td { (r.number) } td.mono { (r.sha256) } td { (r.submitted_by) } td.mono { (r.created_at) } }
                }
            }
        }
        h3 { "Security impact and eligibility" }
        dl {
            dt { "Eligible for a live patch" } dd { @if p.eligibility.eligible { "yes" } @else { "no" } }
            dt { "Category" } dd { (p.eligibility.category.label()) }
            dt { "CVSS" } dd {
                @match &p.eligibility.cvss {
                    Some(cvss) => { (cvss.score) " (" (cvss.severity) ", CVSS " (cvss.version) ") " span.mono { (cvss.vector) } }
                    None => span.none { "no vector given" },
                }
            }
            dt { "Why" } dd { @for reason in &p.eligibility.reasons { (reason) br; } }
        }
        h3 { "What the live patch replaces, per kernel build" }
        @if p.analyses.is_empty() {
            p.none { "No analysis against a kernel target." }
        } @else {
            table.analyses id=(format!("analyses-{id}")) {
                thead { tr {
                    th { "Revision" } th { "Target and build-id" } th { "Outcome" }
                    th { "Functions to replace" } th { "At" }
                } }
                tbody {
                    @for a in &p.analyses {
                        tr {
                            td { (a.revision) }
                            td { (a.target) br; span.mono { (a.build_id) } }
                            td { (a.outcome) br; (a.summary) }
                            td.mono {
                                @for f in a.replace.iter().take(20) { (f) br; }
                                @if a.replace.len() > 20 { span.none { "and " (a.replace.len() - 20) " more (see " (a.report_file.as_deref().unwrap_or("the report")) ")" } }
                            }
                            td.mono { (a.at) }
                        }
                    }
                }
            }
        }
        h3 { "Approvals by authorised parties" }
        @if p.sign_offs.is_empty() {
            p.none { "No sign-offs." }
        } @else {
            table.sign-offs id=(format!("sign-offs-{id}")) {
                thead { tr {
                    th { "Who" } th { "Role" } th { "Verdict" } th { "Revision and SHA-256" }
                    th { "At" } th { "Comment or justification" }
                } }
                tbody {
                    @for s in &p.sign_offs {
                        tr {
                            td { (s.name) " (" span.mono { (s.username) } ")" }
                            td { (s.role.label()) }
                            td { (s.verdict.as_str())
                                @if let Some(at) = &s.withdrawn_at { br; span.none { "withdrawn " (at) } } }
                            td { (s.revision) br; span.mono { (s.revision_sha256) } }
                            td.mono { (s.at) }
                            td { (s.comment) }
                        }
                    }
                }
            }
        }
        h3 { "Review comments" }
        @if p.threads.is_empty() {
            p.none { "No comments." }
        } @else {
            @for t in &p.threads {
                div {
                    p { span.mono { (t.path) ":" (t.line) } " (" (t.side) ", revision " (t.revision) ")"
                        @if let Some((by, at)) = &t.resolved { ", resolved by " (by) " at " span.mono { (at) } } }
                    ul { @for c in &t.comments { li { (c.author) " at " span.mono { (c.created_at) } ": " (c.body) } } }
                }
            }
        }
        h3 { "Patched in time" }
        dl {
            dt { "Tier" } dd { (p.timeliness.tier.as_str()) }
            dt { "Reported" } dd.mono { (p.timeliness.reported_at) }
            dt { "Due" } dd.mono { (p.timeliness.due_at) }
            dt { "Approved" } dd.mono { @match &p.timeliness.approved_at { Some(at) => (at), None => "not yet" } }
            dt { "Deadline" } dd class=(p.timeliness.outcome) { (p.timeliness.outcome) }
        }
    }
}

fn events(report: &Report<'_>) -> Markup {
    html! {
        h2 id="audit-events" { "Audit trail" }
        @if report.events.is_empty() && report.event_count > 0 {
            p { (report.event_count) " events: too many to list here; each is in "
                code { "events.jsonl" } " with its inclusion proof." }
        } @else {
            p { (report.event_count) " event(s), oldest first. Each is in " code { "events.jsonl" }
                " of the bundle with its fields, its hash, the previous event's hash and its inclusion proof." }
            table id="evidence-events" {
                thead { tr { th { "#" } th { "At" } th { "Actor" } th { "Action" } th { "Subject" } th { "Hash" } } }
                tbody {
                    @for e in report.events {
                        tr { td { (e.seq) } td.mono { (e.at) } td { (e.actor) } td.mono { (e.action) }
                             td.mono { (e.subject) } td.mono { (e.hash.get(..16).unwrap_or(&e.hash)) "…" } }
                    }
                }
            }
        }
    }
}
