//! Evidence an auditor can take away and check without trusting the server: for one
//! change (a patch) or for a period (every change with activity in it, and the population
//! list), a tar archive of sections (the revisions, sign-offs, comments, eligibility,
//! timeliness, every audit event with its inclusion proof, and the sections that later
//! capabilities fill), a printable HTML report mapping each to PCI DSS v4.0.1 and ISO/IEC
//! 27001:2022 controls, and a seal: the audit event that records the export names the
//! SHA-256 of every byte before it and is proved into a signed checkpoint.

pub mod archive;
pub mod report;
pub mod verify;

use super::checkpoints::CheckpointError;
use super::tree::{self, StoredTree};
use super::{retention, review};
use crate::clock;
use crate::store::audit::ExportRange;
use crate::store::{Database, DbError};
use archive::Member;
use futures_util::StreamExt;
use graftbench_app::model::{
    DeadlineView, EligibilityView, PatchInfo, RevisionSummary, Role, SessionUser, ThreadView,
};
use graftbench_domain::audit::{AuditAction, AuditEvent, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::{workflow, SignOffKind, State, Tier};
use serde::{Deserialize, Serialize};
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

/// The bundle format's name and version.
pub const FORMAT: &str = "graftbench-evidence/1";
/// The checkpoint every event's inclusion proof leads to.
pub const CHECKPOINT_FILE: &str = "checkpoint.txt";
/// The verifier key of the instance (for reference: verifiers pin their own copy).
pub const KEY_FILE: &str = "verifier.key";
/// The rotations of the checkpoint key, for a verifier who pinned an older key than the
/// one that signed the bundle's checkpoints (present when there were any).
pub const ANNOUNCEMENTS_FILE: &str = "key-announcements.json";
/// Every audit event in scope, one a line with its inclusion proof.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The human-readable report.
pub const REPORT_FILE: &str = "report.html";
/// The most patches a period bundle holds: larger periods are split by the auditor.
pub const MAX_PATCHES: usize = 2_000;
/// Events per database read and proof batch.
const BATCH: usize = 512;

/// What a bundle covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One patch.
    Patch(i64),
    /// Every change with an event between `from` (inclusive) and `to` (exclusive), times
    /// as stored (empty: open).
    Period {
        /// Start.
        from: String,
        /// End.
        to: String,
    },
}

impl Scope {
    /// The scope as the manifest and the sealing event record it.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Scope::Patch(id) => serde_json::json!({ "patch": id }),
            Scope::Period { from, to } => serde_json::json!({ "from": from, "to": to }),
        }
    }

    /// A file-name-safe label.
    pub fn label(&self) -> String {
        match self {
            Scope::Patch(id) => format!("patch-{id}"),
            Scope::Period { from, to } => format!(
                "period-{}-{}",
                if from.is_empty() {
                    "start"
                } else {
                    &from[..10.min(from.len())]
                },
                if to.is_empty() {
                    "now"
                } else {
                    &to[..10.min(to.len())]
                }
            ),
        }
    }
}

/// A section of the bundle: what it holds, the controls it is evidence for, and, when it
/// is empty, why.
#[derive(Debug, Clone, Copy)]
pub struct SectionSpec {
    /// Its name in the manifest.
    pub name: &'static str,
    /// Its heading.
    pub title: &'static str,
    /// What it shows an auditor.
    pub shows: &'static str,
    /// PCI DSS v4.0.1 requirements.
    pub pci_dss: &'static [&'static str],
    /// ISO/IEC 27001:2022 Annex A controls.
    pub iso_27001: &'static [&'static str],
    /// For sections no capability fills yet: what will.
    pub later: Option<&'static str>,
}

/// Every section, in report order. Later capabilities fill theirs by replacing `later`.
pub const SECTIONS: &[SectionSpec] = &[
    SectionSpec {
        name: "change",
        title: "The change and its revisions",
        shows: "what was changed and why: the fix as submitted, every revision with its SHA-256",
        pci_dss: &["6.5.1 (reason for and description of the change)"],
        iso_27001: &["A.8.32 Change management"],
        later: None,
    },
    SectionSpec {
        name: "eligibility",
        title: "Security impact and eligibility",
        shows: "the CVSS vector and score, the category, the eligibility decision and a security \
                officer's justified exception",
        pci_dss: &[
            "6.5.1 (documentation of security impact)",
            "6.3.1 (vulnerabilities ranked)",
        ],
        iso_27001: &["A.8.8 Management of technical vulnerabilities"],
        later: None,
    },
    SectionSpec {
        name: "approvals",
        title: "Approvals by authorised parties",
        shows: "every sign-off: who, in which role, the verdict, when, and the SHA-256 of the \
                exact revision signed; authors cannot sign off their own change",
        pci_dss: &[
            "6.5.1 (documented change approval by authorised parties)",
            "6.5.4 (roles and functions separated)",
        ],
        iso_27001: &["A.8.32 Change management", "A.5.3 Segregation of duties"],
        later: None,
    },
    SectionSpec {
        name: "discussion",
        title: "Review comments",
        shows: "the line comments and their resolution",
        pci_dss: &["6.2.3 (code reviewed before release)"],
        iso_27001: &["A.8.32 Change management"],
        later: None,
    },
    SectionSpec {
        name: "timeliness",
        title: "Patched in time",
        shows: "the tier, when the problem was reported, the deadline, and whether it was met",
        pci_dss: &["6.3.3 (critical patches within one month)"],
        iso_27001: &["A.8.8 Management of technical vulnerabilities"],
        later: None,
    },
    SectionSpec {
        name: "audit-events",
        title: "Audit trail",
        shows: "every audit event about the change, each with its hash, the chain link and an \
                inclusion proof to a signed checkpoint",
        pci_dss: &[
            "10.2.1 (audit logs capture changes)",
            "10.2.2 (user, type, time, outcome, origin, affected resource)",
            "10.3.2 (logs protected from modification)",
            "10.3.4 (change detection on logs)",
        ],
        iso_27001: &["A.8.15 Logging"],
        later: None,
    },
    SectionSpec {
        name: "analyses",
        title: "Impact analyses (testing)",
        shows: "which functions the live patch must replace on each target, and why",
        pci_dss: &["6.5.1 (testing to verify the change does not adversely affect security)"],
        iso_27001: &["A.8.29 Security testing in development and acceptance"],
        later: Some("kernel targets and analyses (issue 12)"),
    },
    SectionSpec {
        name: "builds",
        title: "Builds and provenance",
        shows: "the signed modules built from the approved revision, their hashes and provenance",
        pci_dss: &["6.5.4 (only reviewed and approved changes deployed)"],
        iso_27001: &["A.8.32 Change management"],
        later: Some("module builds in the workbench"),
    },
    SectionSpec {
        name: "releases",
        title: "Releases, channels and back-out",
        shows: "the cumulative releases that shipped the change, to which channels, and how to \
                back it out",
        pci_dss: &[
            "6.5.1 (back-out procedures)",
            "6.5.2 (requirements confirmed after change)",
        ],
        iso_27001: &["A.8.32 Change management"],
        later: Some("live patch streams and releases"),
    },
    SectionSpec {
        name: "host-reports",
        title: "Host reports",
        shows: "which hosts loaded the patch, and when",
        pci_dss: &["6.3.3 (patches installed)"],
        iso_27001: &["A.8.8 Management of technical vulnerabilities"],
        later: Some("host agents"),
    },
];

/// A section as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SectionEntry {
    /// [`SectionSpec::name`].
    pub name: String,
    /// [`SectionSpec::title`].
    pub title: String,
    /// PCI DSS v4.0.1 requirements.
    pub pci_dss: Vec<String>,
    /// ISO/IEC 27001:2022 controls.
    pub iso_27001: Vec<String>,
    /// `included`, or `none yet: ...`.
    pub status: String,
    /// Members holding it.
    pub files: Vec<String>,
}

/// `manifest.json`: what the bundle holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// `patch` or `period`.
    pub kind: String,
    /// [`Scope::describe`].
    pub scope: serde_json::Value,
    /// The instance (its public URL).
    pub source: String,
    /// Who exported it.
    pub exported_by: String,
    /// When (RFC 3339 UTC).
    pub extracted_at: String,
    /// The size of the checkpoint in [`CHECKPOINT_FILE`].
    pub checkpoint_size: u64,
    /// Audit events in [`EVENTS_FILE`].
    pub events: u64,
    /// The patches covered, by id (the population, for a period).
    pub population: Vec<i64>,
    /// Every section.
    pub sections: Vec<SectionEntry>,
    /// Every member before the manifest, with its size and SHA-256.
    pub members: Vec<Member>,
}

/// `seal.json`: the event recording the export, proved into a signed checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seal {
    /// `graftbench-evidence-seal/1`.
    pub format: String,
    /// The `audit.evidence_exported` event; its details name `archive_sha256`.
    pub event: AuditEvent,
    /// Its inclusion proof in [`Seal::checkpoint`].
    pub proof: Vec<String>,
    /// A checkpoint covering it (signed note).
    pub checkpoint: String,
    /// The consistency proof from [`CHECKPOINT_FILE`]'s tree to this one's.
    pub consistency: Vec<String>,
}

/// A sign-off as evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignOffEvidence {
    /// User name.
    pub username: String,
    /// Display name.
    pub name: String,
    /// The role it was made in.
    pub role: Role,
    /// `approve`, `reject` or `exception`.
    pub verdict: SignOffKind,
    /// The revision signed.
    pub revision: i64,
    /// Its SHA-256.
    pub revision_sha256: String,
    /// The comment or justification.
    pub comment: String,
    /// When (RFC 3339 UTC).
    pub at: String,
    /// When withdrawn.
    pub withdrawn_at: Option<String>,
}

/// Whether the tier's deadline was met.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timeliness {
    /// The tier.
    pub tier: Tier,
    /// When the problem was reported.
    pub reported_at: String,
    /// The deadline.
    pub due_at: String,
    /// When the patch was first approved, if it was.
    pub approved_at: Option<String>,
    /// `met`, `missed`, `open` (not yet approved, not yet due), `overdue` or `closed`.
    pub outcome: String,
}

/// Everything a bundle holds about one patch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchEvidence {
    /// Title, CVEs, CVSS vector, author, creation time.
    pub info: PatchInfo,
    /// Every revision.
    pub revisions: Vec<RevisionSummary>,
    /// The state now.
    pub state: State,
    /// Approvals counted on the current revision, and how many the policy wants.
    pub approvals: u32,
    /// See `approvals`.
    pub approvals_required: u32,
    /// The eligibility decision as the policy in force makes it.
    pub eligibility: EligibilityView,
    /// The deadline.
    pub deadline: DeadlineView,
    /// Met or missed.
    pub timeliness: Timeliness,
    /// Every sign-off, withdrawn ones included.
    pub sign_offs: Vec<SignOffEvidence>,
    /// Every comment thread.
    pub threads: Vec<ThreadView>,
    /// Each revision's analyses against the kernel targets: the security impact of the
    /// change (what the live patch replaces), as PCI DSS 6.5.1 asks a change record to
    /// show. The full reports are beside `patch.json`.
    #[serde(default)]
    pub analyses: Vec<AnalysisEvidence>,
}

/// One analysis of a revision against a target, as evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalysisEvidence {
    /// The revision.
    pub revision: i64,
    /// Its SHA-256.
    pub revision_sha256: String,
    /// The target's name.
    pub target: String,
    /// The kernel build's GNU build-id.
    pub build_id: String,
    /// The report format version.
    pub report_version: i64,
    /// `analysed`, `no_code`, `not_applicable`, `incomplete` or `failed`.
    pub outcome: String,
    /// One line.
    pub summary: String,
    /// The functions the live patch replaces (`object:symbol`, `old_sympos` when not 0).
    pub replace: Vec<String>,
    /// When it was made.
    pub at: String,
    /// The full report's member in the bundle, when there is a report.
    pub report_file: Option<String>,
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// No such patch.
    #[error("patch {0} not found")]
    NotFound(i64),
    /// The period holds more changes than one bundle does.
    #[error("the period holds {0} changes; one bundle holds at most {MAX_PATCHES}: choose a shorter period")]
    TooLarge(usize),
    /// A checkpoint could not be made (no key, a broken chain).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Writing the archive failed.
    #[error("writing the evidence bundle failed: {0}")]
    Io(#[from] std::io::Error),
    /// An archive segment could not be read.
    #[error(transparent)]
    Archive(#[from] retention::RetentionError),
}

/// Collects one patch's evidence.
pub async fn patch_evidence(
    db: &Database,
    archived_approvals: &[AuditEvent],
    policy: &Policy,
    id: i64,
) -> Result<PatchEvidence, EvidenceError> {
    let info = db.patch(id).await?.ok_or(EvidenceError::NotFound(id))?;
    let (facts, sign_offs) = db
        .review_facts(id)
        .await?
        .ok_or(EvidenceError::NotFound(id))?;
    let evaluation = review::evaluate(&facts, &sign_offs, policy);
    let now = time::OffsetDateTime::now_utc();
    let deadline = review::deadline(&facts, evaluation.state, policy, now);
    let approved_at = first_approval(db, archived_approvals, id).await?;
    let outcome = match &approved_at {
        Some(at) if *at <= deadline.due_at || deadline.due_at.is_empty() => "met",
        Some(_) => "missed",
        None if !evaluation.state.is_active() => "closed",
        None if clock::format(now) > deadline.due_at && !deadline.due_at.is_empty() => "overdue",
        None => "open",
    };
    let timeliness = Timeliness {
        tier: deadline.tier,
        reported_at: deadline.reported_at.clone(),
        due_at: deadline.due_at.clone(),
        approved_at,
        outcome: outcome.to_owned(),
    };
    let mut sign_offs: Vec<SignOffEvidence> = sign_offs
        .iter()
        .map(|s| SignOffEvidence {
            username: s.username.clone(),
            name: s.user.clone(),
            role: workflow::signing_role(s.verdict),
            verdict: s.verdict,
            revision: s.revision.get(),
            revision_sha256: s.revision_sha256.to_string(),
            comment: s.comment.clone(),
            at: s.created_at.clone(),
            withdrawn_at: s.withdrawn_at.clone(),
        })
        .collect();
    sign_offs.sort_by(|a, b| a.at.cmp(&b.at));
    let revisions = db.revisions(id).await?;
    let mut analyses = Vec::new();
    for revision in &revisions {
        for a in db.analyses_of(&revision.sha256.to_string()).await? {
            let replace = a
                .report
                .as_ref()
                .and_then(|r| r.get("replace"))
                .and_then(|r| r.as_array())
                .map(|list| {
                    list.iter()
                        .map(|r| {
                            let text = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("");
                            let sympos = r.get("old_sympos").and_then(|v| v.as_u64()).unwrap_or(0);
                            let sympos = if sympos > 0 {
                                format!(" (old_sympos {sympos})")
                            } else {
                                String::new()
                            };
                            format!("{}:{}{sympos}", text("object"), text("symbol"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            analyses.push(AnalysisEvidence {
                revision: revision.number,
                revision_sha256: a.diff_sha256.clone(),
                target: a.target.clone(),
                build_id: a.build_id.clone(),
                report_version: a.report_version,
                outcome: a.outcome.as_str().to_owned(),
                summary: a.summary.clone(),
                replace,
                at: a.created_at.clone(),
                report_file: a.report.as_ref().map(|_| {
                    format!(
                        "patches/{id}/analyses/r{}-{}-v{}.json",
                        revision.number, a.target, a.report_version
                    )
                }),
            });
        }
    }
    Ok(PatchEvidence {
        analyses,
        info,
        revisions,
        state: evaluation.state,
        approvals: evaluation.approvals,
        approvals_required: policy.approvals_required,
        eligibility: evaluation.eligibility,
        deadline,
        timeliness,
        sign_offs,
        threads: db.threads(id).await?,
    })
}

/// Whether `event` moved a patch's state to approved.
fn is_approval(event: &AuditEvent) -> bool {
    event.action == AuditAction::PatchStateChanged.as_str()
        && serde_json::from_str::<serde_json::Value>(&event.details)
            .is_ok_and(|details| details["to"] == State::Approved.as_str())
}

/// When the patch's state first became approved, from its state-change events (the
/// archived ones among `archived_approvals`: [`is_approval`] events of any patch).
async fn first_approval(
    db: &Database,
    archived_approvals: &[AuditEvent],
    id: i64,
) -> Result<Option<String>, EvidenceError> {
    let range = ExportRange {
        subject: AuditSubject::Patch(graftbench_domain::PatchId(id)).to_string(),
        action: AuditAction::PatchStateChanged.as_str().to_owned(),
        up_to_seq: i64::MAX,
        ..ExportRange::default()
    };
    if let Some(event) = archived_approvals.iter().find(|e| range.matches(e)) {
        return Ok(Some(event.at.clone()));
    }
    let sql = crate::store::audit::export_events_sql(&range);
    let mut changes = std::pin::pin!(db.export_events(&range, &sql));
    while let Some(event) = changes.next().await {
        let event = event?;
        if is_approval(&event) {
            return Ok(Some(event.at));
        }
    }
    Ok(None)
}

/// Every archived event, read once for a whole report or bundle (each archive segment
/// is read whole): its population, approvals and events are picked from these.
async fn all_archived(db: &Database, archive: &Path) -> Result<Vec<AuditEvent>, EvidenceError> {
    let everything = ExportRange {
        up_to_seq: i64::MAX,
        ..ExportRange::default()
    };
    Ok(retention::archived_events(db, archive, &everything).await?)
}

/// The patches a scope covers.
async fn population(
    db: &Database,
    archived: &[AuditEvent],
    scope: &Scope,
) -> Result<Vec<i64>, EvidenceError> {
    let ids = match scope {
        Scope::Patch(id) => {
            db.patch(*id).await?.ok_or(EvidenceError::NotFound(*id))?;
            vec![*id]
        }
        Scope::Period { from, to } => {
            let period = event_range(scope, i64::MAX);
            let mut ids: Vec<i64> = archived
                .iter()
                .filter(|e| period.matches(e))
                .filter_map(|e| e.subject.strip_prefix("patch:")?.parse().ok())
                .collect();
            ids.extend(db.patches_with_events_between(from, to).await?);
            ids.sort_unstable();
            ids.dedup();
            ids
        }
    };
    if ids.len() > MAX_PATCHES {
        return Err(EvidenceError::TooLarge(ids.len()));
    }
    Ok(ids)
}

/// The events a scope covers, up to `up_to_seq`.
fn event_range(scope: &Scope, up_to_seq: i64) -> ExportRange {
    match scope {
        Scope::Patch(id) => ExportRange {
            subject: AuditSubject::Patch(graftbench_domain::PatchId(*id)).to_string(),
            up_to_seq,
            ..ExportRange::default()
        },
        Scope::Period { from, to } => ExportRange {
            from: from.clone(),
            to: to.clone(),
            up_to_seq,
            ..ExportRange::default()
        },
    }
}

/// The report as a page, without a bundle: what the browser shows.
pub async fn report_page(
    db: &Database,
    archive: &Path,
    policy: &Policy,
    source: &str,
    viewer: &SessionUser,
    scope: &Scope,
) -> Result<String, EvidenceError> {
    let archived = all_archived(db, archive).await?;
    let ids = population(db, &archived, scope).await?;
    let approvals: Vec<AuditEvent> = archived
        .iter()
        .filter(|e| is_approval(e))
        .cloned()
        .collect();
    let mut patches = Vec::with_capacity(ids.len());
    for id in &ids {
        patches.push(patch_evidence(db, &approvals, policy, *id).await?);
    }
    let newest = db.checkpoints(1).await?.into_iter().next();
    let head = db.audit_head_seq().await?;
    let range = event_range(scope, head);
    let mut events: Vec<AuditEvent> = archived.into_iter().filter(|e| range.matches(e)).collect();
    let (online, _, _) = db.export_counts(&range).await?;
    let count = online + i64::try_from(events.len()).unwrap_or(i64::MAX);
    if count <= report::EVENTS_SHOWN as i64 {
        let online = db
            .export_events(&range, &crate::store::audit::export_events_sql(&range))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        events.extend(online);
    } else {
        events.clear();
    }
    Ok(report::render(&report::Report {
        scope,
        source,
        exported_by: &viewer.username,
        extracted_at: &clock::now(),
        checkpoint: newest.as_ref().map(|c| (c.size, c.root.as_str())),
        patches: &patches,
        events: &events,
        event_count: u64::try_from(count).unwrap_or(0),
        bundle: false,
    }))
}

/// A bundle written to a temporary file, ready to send.
pub struct Bundle {
    /// The archive (deleted when dropped).
    pub file: tempfile::NamedTempFile,
    /// The name to save it as.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Writes the evidence bundle of `scope` for `viewer`: signs a checkpoint, writes every
/// section with the events and their proofs, records the export as an audit event
/// naming the archive's SHA-256, signs a checkpoint covering that event and seals the
/// archive with it.
pub async fn bundle(
    db: &Database,
    policy: &Policy,
    data_dir: &Path,
    source: &str,
    viewer: &SessionUser,
    scope: &Scope,
) -> Result<Bundle, EvidenceError> {
    let archived = all_archived(db, &retention::archive_dir(data_dir)).await?;
    let ids = population(db, &archived, scope).await?;
    let base = tree::sign_checkpoint(db, data_dir).await?;
    let vkey = super::checkpoints::load_key(data_dir)?
        .map(|(_, vkey)| vkey)
        .unwrap_or_default();
    let extracted_at = clock::now();
    let approvals: Vec<AuditEvent> = archived
        .iter()
        .filter(|e| is_approval(e))
        .cloned()
        .collect();
    let mut patches = Vec::with_capacity(ids.len());
    for id in &ids {
        patches.push(patch_evidence(db, &approvals, policy, *id).await?);
    }

    // The events with their proofs go to a file of their own first: the archive needs
    // each member's size before its content.
    let range = event_range(scope, i64::try_from(base.size).unwrap_or(i64::MAX));
    let mut events_file = tempfile::tempfile()?;
    let mut shown = Vec::new();
    let mut count = 0u64;
    {
        let mut out = BufWriter::new(&mut events_file);
        // The archived events first (all older than the online ones): the stored tree
        // still holds their hashes, so they are proved like the rest.
        let sql = crate::store::audit::export_events_sql(&range);
        let in_scope = archived.into_iter().filter(|e| range.matches(e));
        let mut rows = std::pin::pin!(futures_util::stream::iter(in_scope.map(Ok::<_, DbError>))
            .chain(db.export_events(&range, &sql))
            .chunks(BATCH));
        let mut tree = StoredTree::new(db);
        while let Some(batch) = rows.next().await {
            let batch: Vec<AuditEvent> = batch.into_iter().collect::<Result<_, _>>()?;
            let seqs: Vec<u64> = batch
                .iter()
                .map(|e| u64::try_from(e.seq).unwrap_or(0))
                .collect();
            let proofs = tree.inclusion_proofs(&seqs, base.size).await?;
            for (event, proof) in batch.into_iter().zip(proofs) {
                let mut line = serde_json::to_value(&event).unwrap_or_default();
                line["proof"] = proof.iter().map(ToString::to_string).collect();
                serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
                count += 1;
                if shown.len() < report::EVENTS_SHOWN {
                    shown.push(event);
                }
            }
        }
        out.flush()?;
    }
    if count > report::EVENTS_SHOWN as u64 {
        shown.clear();
    }
    let html = report::render(&report::Report {
        scope,
        source,
        exported_by: &viewer.username,
        extracted_at: &extracted_at,
        checkpoint: Some((i64::try_from(base.size).unwrap_or(i64::MAX), "")),
        patches: &patches,
        events: &shown,
        event_count: count,
        bundle: true,
    });

    // The members, in order; hashing and copying off the async workers.
    let mut section_files_early: Vec<(&str, String)> = Vec::new();
    let mut writer = archive::Writer::new(BufWriter::new(tempfile::NamedTempFile::new()?));
    // First, so that a verifier knows every key before it meets a checkpoint.
    let announcements = tree::announcements(db).await?;
    if !announcements.is_empty() {
        let list: Vec<serde_json::Value> = announcements.iter().map(|a| a.to_json()).collect();
        let json = serde_json::to_vec_pretty(&list).map_err(std::io::Error::other)?;
        writer.add_bytes(ANNOUNCEMENTS_FILE, &json)?;
        section_files_early.push(("audit-events", ANNOUNCEMENTS_FILE.to_owned()));
    }
    writer.add_bytes(CHECKPOINT_FILE, base.note.as_bytes())?;
    writer.add_bytes(KEY_FILE, format!("{vkey}\n").as_bytes())?;
    let mut section_files: Vec<(&str, String)> = section_files_early;
    for patch in &patches {
        let id = patch.info.id;
        let json = serde_json::to_vec_pretty(patch).map_err(std::io::Error::other)?;
        let path = format!("patches/{id}/patch.json");
        writer = blocking(writer, move |w| w.add_bytes(&path, &json)).await?;
        for section in ["eligibility", "approvals", "discussion", "timeliness"] {
            section_files.push((section, format!("patches/{id}/patch.json")));
        }
        for revision in &patch.revisions {
            for analysis in db.analyses_of(&revision.sha256.to_string()).await? {
                let Some(report) = &analysis.report else {
                    continue;
                };
                let path = format!(
                    "patches/{id}/analyses/r{}-{}-v{}.json",
                    revision.number, analysis.target, analysis.report_version
                );
                let json = serde_json::to_vec_pretty(report).map_err(std::io::Error::other)?;
                section_files.push(("eligibility", path.clone()));
                writer = blocking(writer, move |w| w.add_bytes(&path, &json)).await?;
            }
        }
        for revision in &patch.revisions {
            let stored = db.revision(id, revision.number).await?.ok_or_else(|| {
                DbError::Corrupt(format!("revision {} of patch {id}", revision.number))
            })?;
            let path = format!("patches/{id}/revisions/{}.diff", revision.number);
            section_files.push(("change", path.clone()));
            writer = blocking(writer, move |w| w.add_bytes(&path, &stored.diff)).await?;
        }
    }
    writer = blocking(writer, move |w| {
        let size = events_file.seek(std::io::SeekFrom::End(0))?;
        events_file.rewind()?;
        w.add(EVENTS_FILE, size, std::io::BufReader::new(events_file))
    })
    .await?;
    section_files.push(("audit-events", EVENTS_FILE.into()));
    section_files.push(("audit-events", CHECKPOINT_FILE.into()));
    writer.add_bytes(REPORT_FILE, html.as_bytes())?;
    let manifest = Manifest {
        format: FORMAT.into(),
        kind: match scope {
            Scope::Patch(_) => "patch".into(),
            Scope::Period { .. } => "period".into(),
        },
        scope: scope.describe(),
        source: source.to_owned(),
        exported_by: viewer.username.clone(),
        extracted_at,
        checkpoint_size: base.size,
        events: count,
        population: ids.clone(),
        sections: section_entries(&section_files),
        members: writer.members().to_vec(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    writer.add_bytes(archive::MANIFEST, &manifest)?;
    let manifest_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest));
    let archive_sha256 = writer.sha256_so_far();

    // The seal.
    let sealed = db
        .record(
            &viewer.username,
            AuditAction::AuditEvidenceExported,
            &AuditSubject::Trail,
            &serde_json::json!({
                "scope": scope.describe(),
                "archive_sha256": archive_sha256,
                "manifest_sha256": manifest_sha256,
                "events": count,
                "checkpoint_size": base.size,
            }),
        )
        .await?;
    let head = tree::sign_checkpoint(db, data_dir).await?;
    let mut tree = StoredTree::new(db);
    let seq = u64::try_from(sealed).unwrap_or(0);
    let proof = tree.inclusion_proof(seq, head.size).await?;
    let consistency = if head.size > base.size {
        tree.consistency_proof(base.size, head.size).await?
    } else {
        Vec::new()
    };
    let event = db
        .events_after(sealed - 1, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| DbError::Corrupt(format!("event {sealed} vanished")))?;
    let seal = Seal {
        format: "graftbench-evidence-seal/1".into(),
        event,
        proof: proof.iter().map(ToString::to_string).collect(),
        checkpoint: head.note,
        consistency: consistency.iter().map(ToString::to_string).collect(),
    };
    let seal = serde_json::to_value(&seal)
        .and_then(|v| serde_json::to_vec(&v))
        .map_err(std::io::Error::other)?;
    let (file, size) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let mut out = writer.seal(&seal)?;
        out.flush()?;
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        let size = file.as_file_mut().stream_position()?;
        Ok((file, size))
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok(Bundle {
        file,
        name: format!(
            "graftbench-evidence-{}-{}.tar",
            scope.label(),
            clock::now().replace([':', '.'], "")
        ),
        size,
    })
}

/// Runs `write` on the archive off the async workers; the archive back.
async fn blocking<W: Write + Send + 'static>(
    mut writer: archive::Writer<W>,
    write: impl FnOnce(&mut archive::Writer<W>) -> std::io::Result<()> + Send + 'static,
) -> std::io::Result<archive::Writer<W>> {
    tokio::task::spawn_blocking(move || write(&mut writer).map(|()| writer))
        .await
        .map_err(std::io::Error::other)?
}

/// Every section with the members that hold it, or why none do.
fn section_entries(files: &[(&str, String)]) -> Vec<SectionEntry> {
    SECTIONS
        .iter()
        .map(|spec| {
            let mut held: Vec<String> = files
                .iter()
                .filter(|(name, _)| *name == spec.name)
                .map(|(_, path)| path.clone())
                .collect();
            held.dedup();
            SectionEntry {
                name: spec.name.into(),
                title: spec.title.into(),
                pci_dss: spec.pci_dss.iter().map(|s| (*s).into()).collect(),
                iso_27001: spec.iso_27001.iter().map(|s| (*s).into()).collect(),
                status: match spec.later {
                    Some(later) => format!("none yet: {later} will add it"),
                    None if held.is_empty() => "none: no change in scope".into(),
                    None => "included".into(),
                },
                files: held,
            }
        })
        .collect()
}
