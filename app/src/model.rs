//! Plain data exchanged between the server and the hydrated pages.

pub use graftbench_domain::{
    Action, Category, PatchId, RevisionNumber, Role, SignOffKind, State, Tier, UserId, Verdict,
};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The signed-in user, as the server resolved it for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// Database id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
}

/// The roles that read the audit trail and the evidence reports.
pub const AUDIT_READERS: [Role; 3] = [Role::Auditor, Role::SecurityOfficer, Role::Admin];

impl SessionUser {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the user may read the audit trail and evidence reports. The server's check
    /// and the page's links ask this same question.
    pub fn reads_audit(&self) -> bool {
        AUDIT_READERS.iter().any(|r| self.has_role(*r))
    }

    /// Whether the user may submit fixes (authors).
    pub fn submits_fixes(&self) -> bool {
        self.has_role(Role::Author)
    }
}

/// An account as an admin sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    /// Database id.
    pub id: UserId,
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
    /// Roles granted and waiting for a second admin's confirmation.
    pub pending_roles: Vec<Role>,
    /// When the account was disabled (it cannot sign in; its sessions are over).
    pub disabled_at: Option<String>,
    /// Seeded by `serve --demo` with a published password.
    pub demo: bool,
}

/// A deadline as shown: when, and how it stands at the time the page was rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadlineView {
    /// The tier that set it.
    pub tier: Tier,
    /// When the problem was reported, RFC 3339 UTC.
    pub reported_at: String,
    /// When the patch must ship, RFC 3339 UTC.
    pub due_at: String,
    /// Seconds left when rendered (negative when overdue); `None` for closed patches.
    pub seconds_left: Option<i64>,
}

impl DeadlineView {
    /// Past due and still open.
    pub fn overdue(&self) -> bool {
        self.seconds_left.is_some_and(|s| s < 0)
    }
}

/// `5400` -> `1h 30m`; days for long spans.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.unsigned_abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// The CVSS score of a patch's vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvssView {
    /// The vector.
    pub vector: String,
    /// `3.1`, `4.0`, ...
    pub version: String,
    /// Base score.
    pub score: f64,
    /// none, low, medium, high, critical.
    pub severity: String,
}

/// Whether a patch may ship as a live patch, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EligibilityView {
    /// The verdict.
    pub eligible: bool,
    /// One line per rule that decided it.
    pub reasons: Vec<String>,
    /// The scored vector, when the patch has one.
    pub cvss: Option<CvssView>,
    /// What the patch fixes.
    pub category: Category,
}

/// One sign-off as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignOffView {
    /// Id.
    pub id: i64,
    /// Display name.
    pub user: String,
    /// Approve, reject, or an exception sign-off.
    pub verdict: SignOffKind,
    /// The revision signed off.
    pub revision: i64,
    /// Its SHA-256.
    pub revision_sha256: String,
    /// The comment or justification.
    pub comment: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// When its author took it back.
    pub withdrawn_at: Option<String>,
    /// On an older revision: shown, not counted.
    pub outdated: bool,
}

/// One comment in a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentView {
    /// Id.
    pub id: i64,
    /// Display name.
    pub author: String,
    /// The text.
    pub body: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A thread of line comments, anchored to a revision, file, side and line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadView {
    /// The first comment's id; replies and resolving refer to it.
    pub id: i64,
    /// The revision commented on.
    pub revision: i64,
    /// File path.
    pub path: String,
    /// `old` or `new`.
    pub side: String,
    /// Line number on that side.
    pub line: u32,
    /// The comments, oldest first.
    pub comments: Vec<CommentView>,
    /// Who resolved it and when, if resolved.
    pub resolved: Option<(String, String)>,
    /// The kind of the pitfall on its line it notes was considered, for such a thread.
    #[serde(default)]
    pub pitfall: Option<String>,
    /// For a thread of another revision than the one on the page: the side and line it
    /// maps to in the page's revision, where that revision's diff shows the line. A
    /// thread of another revision without one is outdated there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shown_at: Option<(String, u32)>,
}

/// The review side of a patch page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewView {
    /// Where the patch stands.
    pub state: State,
    /// The latest revision's number: sign-offs count only on it.
    pub current_revision: i64,
    /// Its SHA-256, which sign-offs must name.
    pub current_sha256: String,
    /// Approvals counted on the current revision.
    pub approvals: u32,
    /// Approvals the policy requires.
    pub approvals_required: u32,
    /// Eligibility.
    pub eligibility: EligibilityView,
    /// The deadline.
    pub deadline: DeadlineView,
    /// Every sign-off, newest first.
    pub sign_offs: Vec<SignOffView>,
    /// Every comment thread, by file and line.
    pub threads: Vec<ThreadView>,
    /// What the signed-in user may do now (exactly what the rules allow).
    pub actions: Vec<Action>,
    /// The reviewers asked for, in the order they were asked.
    pub requested: Vec<ReviewerView>,
    /// Whom the signed-in user may ask for now (reviewers not yet asked who did not write
    /// the patch); empty when the rules do not let them ask.
    pub request_candidates: Vec<ReviewerView>,
    /// Whether the signed-in user may ask for and stop asking for reviewers now.
    pub can_request_reviewers: bool,
    /// The signed-in user's drafts on this patch, oldest first: only they see them.
    #[serde(default)]
    pub drafts: Vec<DraftView>,
}

/// One of the signed-in user's comments not yet published (a new thread, or a reply):
/// only its author sees it, until it is published with a verdict or on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DraftView {
    /// Its id among the drafts (`draft-3` on the page).
    pub id: i64,
    /// The thread it replies to, for a reply.
    pub thread: Option<i64>,
    /// The revision it is on (a reply's is its thread's).
    pub revision: i64,
    /// File path.
    pub path: String,
    /// `old` or `new`.
    pub side: String,
    /// Line number on that side.
    pub line: u32,
    /// The text.
    pub body: String,
    /// When it was written.
    pub created_at: String,
}

/// A reviewer, asked for or to be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewerView {
    /// User name (what the forms send).
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Who asked, by user name (empty for candidates).
    pub requested_by: String,
    /// Whether they have given a verdict on the current revision.
    pub signed_current: bool,
}

/// The signed-in user's "reviewed" mark on a file of the revision shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMark {
    /// The file's path.
    pub path: String,
    /// `true`: reviewed as it stands; `false`: reviewed, but a later revision changed the
    /// file's change since.
    pub current: bool,
}

/// One audit event as the audit page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEventView {
    /// Sequence number.
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// User name.
    pub actor: String,
    /// E.g. `sign_off.approve`.
    pub action: String,
    /// E.g. `patch:7`.
    pub subject: String,
    /// JSON details.
    pub details: String,
    /// This event's hash.
    pub hash: String,
}

/// Filters of the audit page; empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Exact user name.
    pub actor: String,
    /// Action, or its prefix ending in `.` (`sign_off.`).
    pub action: String,
    /// Exact subject (`patch:7`).
    pub subject: String,
}

/// The audit page: matching events in sequence order, and whether the chain holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    /// Matching events, oldest first (the newest [`AuditPage::limit`] of them).
    pub events: Vec<AuditEventView>,
    /// How many matched in all.
    pub matched: i64,
    /// The most shown.
    pub limit: i64,
    /// `None` when the chain verifies, else where it breaks.
    pub broken: Option<String>,
    /// Events in the trail's Merkle tree: each was checked against the chain when it
    /// entered it; a view checks only the events after them.
    pub tree_leaves: i64,
    /// The newest stored checkpoints, newest first.
    pub checkpoints: Vec<CheckpointView>,
    /// How many months events stay online (the policy's `[audit] online_months`).
    pub online_months: u32,
    /// The oldest event still online: its sequence number and time.
    pub oldest_online: Option<(i64, String)>,
    /// The archive segments holding the older events, oldest first.
    pub segments: Vec<SegmentView>,
}

/// An archive segment as the audit page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentView {
    /// Its first event.
    pub first_seq: i64,
    /// Its last event.
    pub last_seq: i64,
    /// The first event's time.
    pub first_at: String,
    /// The last event's time.
    pub last_at: String,
    /// The file's name.
    pub file: String,
    /// The file's SHA-256.
    pub sha256: String,
}

/// A signed checkpoint of the trail as the audit page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointView {
    /// Events it commits to.
    pub size: i64,
    /// When it was signed (RFC 3339 UTC).
    pub created_at: String,
    /// The Merkle tree's root (base64).
    pub root: String,
}

/// One line of a line-by-line comparison (the commit message in an interdiff).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterdiffLine {
    /// Only in the older revision (removed), only in the newer (added), or in both.
    pub kind: LineKind,
    /// The diff line's text.
    pub text: String,
}

/// A run of interdiff lines with a little context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterdiffHunk {
    /// Line in the older revision's text where the run starts (1-based).
    pub old_start: usize,
    /// Line in the newer revision's text.
    pub new_start: usize,
    /// The lines.
    pub lines: Vec<InterdiffLine>,
}

/// What changed between two revisions: the older diff against the newer one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterdiffView {
    /// The patch.
    pub info: PatchInfo,
    /// All revisions, for choosing.
    pub revisions: Vec<RevisionSummary>,
    /// Older revision number.
    pub from: i64,
    /// Newer revision number.
    pub to: i64,
    /// Per file, what the older revision leaves (old side) against what the newer one
    /// leaves (new side), highlighted like a diff; files both change alike are left out.
    pub files: Vec<FileView>,
    /// Files the two revisions patch in different versions (one was rebased): compared
    /// by the lines each leaves, without the original file around them.
    #[serde(default)]
    pub rebased: Vec<String>,
    /// How the commit message (subject and body) changed; empty when it did not.
    #[serde(default)]
    pub message: Vec<InterdiffHunk>,
    /// How the functions to replace changed, per target.
    #[serde(default)]
    pub replace_sets: Vec<ReplaceSetChange>,
}

/// How one target's functions to replace changed between two revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceSetChange {
    /// The target.
    pub target: String,
    /// Replaced in the newer revision only (`vmlinux:foo`, `:2` for an `old_sympos`).
    pub added: Vec<String>,
    /// Replaced in the older revision only.
    pub removed: Vec<String>,
    /// Replaced in both.
    pub kept: usize,
    /// Why there is nothing to compare, when one revision has no report for it.
    pub missing: Option<String>,
}

/// The policy in force, for the read-only policy page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyView {
    /// Where it came from: a file path, or the built-in defaults.
    pub source: String,
    /// The effective policy as TOML.
    pub toml: String,
}

/// The dashboard's filters, as the URL carries them (`/?q=proc&state=in_review&needs=me`);
/// empty fields match everything, and the filters that are set must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PatchFilter {
    /// Words, each found (case-insensitive) in the title, a CVE id or a path the current
    /// revision changes.
    pub q: String,
    /// A state's stable name (`in_review`).
    pub state: String,
    /// A target's name: patches filed for it.
    pub target: String,
    /// `me`: patches waiting for the signed-in user's sign-off on their current revision
    /// (requested from them, or open and theirs to approve).
    pub needs: String,
    /// `me`: the signed-in user's own patches.
    pub author: String,
    /// `soon`: open patches due within [`DUE_SOON_SECONDS`], or overdue.
    pub due: String,
}

/// What "due soon" means on the dashboard: three days.
pub const DUE_SOON_SECONDS: i64 = 3 * 24 * 3600;

impl PatchFilter {
    /// The filter as a URL query (`?q=…&state=…`), empty when nothing is set.
    pub fn to_query(&self) -> String {
        let pairs = [
            ("q", &self.q),
            ("state", &self.state),
            ("target", &self.target),
            ("needs", &self.needs),
            ("author", &self.author),
            ("due", &self.due),
        ];
        let set: Vec<String> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", query_escape(v)))
            .collect();
        if set.is_empty() {
            String::new()
        } else {
            format!("?{}", set.join("&"))
        }
    }

    /// Whether any filter is set.
    pub fn is_set(&self) -> bool {
        !self.to_query().is_empty()
    }
}

/// Percent-encodes `value` for a URL query (unreserved characters stay).
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// One row of the patch list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchSummary {
    /// Patch id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// CVE ids.
    pub cves: Vec<String>,
    /// Display name of the author.
    pub author: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// Number of revisions.
    pub revisions: i64,
    /// Where it stands.
    pub state: State,
    /// The deadline.
    pub deadline: DeadlineView,
    /// Whether it may ship as a live patch.
    pub eligible: bool,
    /// The signed-in user was asked to review it (by its author or a release manager).
    pub requested_from_me: bool,
}

/// One revision in a patch's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionSummary {
    /// 1, 2, ...
    pub number: i64,
    /// SHA-256 of the submitted bytes, lower-case hex.
    pub sha256: String,
    /// Display name of the submitter.
    pub submitted_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// A patch's own fields, without its revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchInfo {
    /// Patch id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// CVE ids.
    pub cves: Vec<String>,
    /// The CVSS vector as submitted (empty when none was given).
    pub cvss_vector: String,
    /// Display name of the author.
    pub author: String,
    /// RFC 3339 UTC.
    pub created_at: String,
}

/// Everything the patch page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchPage {
    /// The patch.
    pub info: PatchInfo,
    /// All revisions, oldest first.
    pub revisions: Vec<RevisionSummary>,
    /// The revision on screen.
    pub shown: RevisionView,
    /// State, eligibility, deadline, sign-offs, comments, and what the user may do.
    pub review: ReviewView,
    /// The pitfalls the analyses of the shown revision found, on their diff lines.
    pub pitfalls: Vec<PitfallView>,
    /// The signed-in user's "reviewed" marks on the shown revision's files.
    pub file_marks: Vec<FileMark>,
    /// The active targets of the patch whose source tree is known: each changed file
    /// downloads as such a tree has it (old) and with the fix applied there (new).
    #[serde(default)]
    pub source_targets: Vec<String>,
    /// Where no target's source is known: the gaps around the shown revision's hunks
    /// that the patch's other revisions show lines of.
    #[serde(default)]
    pub known_around: Vec<KnownGap>,
}

/// A gap next to a hunk where the patch's other revisions show the original file's
/// lines: how many of them join the hunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownGap {
    /// The file's index in the revision.
    pub file: usize,
    /// The hunk, from 0, in that file.
    pub hunk: usize,
    /// Below the hunk (only the file's last hunk has such a gap); otherwise above.
    pub below: bool,
    /// How many lines, from the hunk outward.
    pub lines: usize,
}

/// A pitfall on the diff line it is about (merged over the targets that found it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PitfallView {
    /// Its anchor in the page (`pitfall-3`).
    pub anchor: String,
    /// The kind's name (`static-local`).
    pub kind: String,
    /// The file's index in the diff.
    pub file: usize,
    /// The file's path.
    pub path: String,
    /// The line's old-side number, if it has one.
    pub old: Option<u32>,
    /// Its new-side number, if it has one.
    pub new: Option<u32>,
    /// Why it matters for a live patch, in one sentence.
    pub why: String,
    /// What the analysis saw.
    pub detail: String,
    /// The kpatch patch author guide's section on it: its title.
    pub guide_title: String,
    /// ... and its address.
    pub guide_url: String,
    /// The targets whose analyses found it.
    pub targets: Vec<String>,
    /// Reviewers' notes that they considered it.
    pub considered: Vec<ConsideredView>,
}

impl PitfallView {
    /// The side and line a comment on it is anchored to: the new side when the line has
    /// one (an added or context line), else the old.
    pub fn anchor_line(&self) -> (&'static str, u32) {
        match (self.new, self.old) {
            (Some(new), _) => ("new", new),
            (None, Some(old)) => ("old", old),
            (None, None) => ("new", 0),
        }
    }
}

/// A reviewer's note that a pitfall was considered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsideredView {
    /// Who.
    pub by: String,
    /// What they said.
    pub comment: String,
    /// When.
    pub at: String,
    /// On which revision.
    pub revision: i64,
}

/// One revision, rendered for reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionView {
    /// Revision number.
    pub number: i64,
    /// SHA-256 of the submission.
    pub sha256: String,
    /// `unified`, `git-diff` or `mail`.
    pub format: String,
    /// Mail fields of a `git format-patch` submission.
    pub mail: Option<MailView>,
    /// Files changed.
    pub files_changed: usize,
    /// Lines added.
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
    /// The files.
    pub files: Vec<FileView>,
    /// Whether the lines are highlighted; `false` while the highlighter is still at work on
    /// a long revision (the page shows its text meanwhile).
    #[serde(default = "yes")]
    pub highlighted: bool,
}

fn yes() -> bool {
    true
}

/// The part of a file's diff a page left out, to be loaded on demand: its last `hunks`
/// hunks, `lines` lines in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBack {
    /// How many hunks (the file's last).
    pub hunks: usize,
    /// How many lines they have.
    pub lines: usize,
}

/// Lines of a changed file next to one hunk, asked for by the patch page's "more lines"
/// controls: from a target's copy of the file, or from the patch's other revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextQuery {
    /// The patch.
    pub id: i64,
    /// The revision.
    pub revision: i64,
    /// The file, by the path the diff names it.
    pub path: String,
    /// The hunk, from 0, in that file.
    pub hunk: usize,
    /// Below the hunk (otherwise above).
    pub below: bool,
    /// How many lines at most, nearest the hunk.
    pub count: usize,
    /// The target whose source tree has the file; without one, the lines come from the
    /// patch's other revisions.
    #[serde(default)]
    pub target: Option<String>,
}

/// Hunks of one file a patch page loads after the page: what it held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHunks {
    /// The hunks, from the one asked for to the file's last.
    pub hunks: Vec<HunkView>,
    /// Whether they are highlighted (see [`RevisionView::highlighted`]).
    pub highlighted: bool,
}

/// The mail header of a `git format-patch` submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailView {
    /// Commit id.
    pub commit: Option<String>,
    /// `From:`.
    pub from: Option<String>,
    /// `Date:`.
    pub date: Option<String>,
    /// `Subject:` without the `[PATCH]` tag.
    pub subject: Option<String>,
    /// Commit message.
    pub message: String,
}

/// One file of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    /// Old path (absent for new files).
    pub old_path: Option<String>,
    /// New path (absent for deleted files).
    pub new_path: Option<String>,
    /// `modified`, `added`, `deleted`, `renamed`, `copied`.
    pub change: String,
    /// Mode change, e.g. `100644 → 100755`.
    pub mode_change: Option<String>,
    /// Highlighting used: a syntax name, or `plain`.
    pub syntax: String,
    /// Lines added in this file.
    pub added: usize,
    /// Lines removed in this file.
    pub removed: usize,
    /// The hunks (the first of them, when some are held back).
    pub hunks: Vec<HunkView>,
    /// The hunks a page left out of a long revision, loaded when the reader gets there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_back: Option<HeldBack>,
}

impl FileView {
    /// The path to show.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }

    /// A fragment id for links to this file.
    pub fn anchor(&self, index: usize) -> String {
        format!("file-{index}")
    }
}

/// One hunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkView {
    /// `@@ -a,b +c,d @@`.
    pub range: String,
    /// The enclosing function or section (git's hunk heading, or found in the context).
    pub section: String,
    /// The lines.
    pub lines: Vec<LineView>,
}

/// Kind of a diff line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineKind {
    /// Unchanged.
    #[serde(rename = "c")]
    Context,
    /// Removed.
    #[serde(rename = "d")]
    Removed,
    /// Added.
    #[serde(rename = "a")]
    Added,
}

/// One diff line, highlighted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    /// Context, removed, added.
    #[serde(rename = "k")]
    pub kind: LineKind,
    /// Old line number.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub old: Option<u32>,
    /// New line number.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub new: Option<u32>,
    /// The line as HTML: escaped text in `<span>`s carrying highlight classes, with
    /// `<mark>` around intra-line changes. Produced by the server's renderer only.
    #[serde(rename = "h")]
    pub html: String,
    /// The file has no newline after this line.
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub no_eol: bool,
}

/// One row of the side-by-side view: indices into a hunk's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SideBySideRow {
    /// The old-side line, if any.
    pub left: Option<usize>,
    /// The new-side line, if any.
    pub right: Option<usize>,
}

/// Lays out a hunk's lines side by side: context lines face themselves; a block of
/// removed lines faces the block of added lines that follows it, line by line, the longer
/// block running on alone. The server pairs lines the same way for intra-line emphasis.
pub fn side_by_side(kinds: &[LineKind]) -> Vec<SideBySideRow> {
    let mut rows = Vec::with_capacity(kinds.len());
    let mut i = 0;
    while i < kinds.len() {
        match kinds[i] {
            LineKind::Context => {
                rows.push(SideBySideRow {
                    left: Some(i),
                    right: Some(i),
                });
                i += 1;
            }
            LineKind::Removed | LineKind::Added => {
                let removed_start = i;
                while i < kinds.len() && kinds[i] == LineKind::Removed {
                    i += 1;
                }
                let added_start = i;
                while i < kinds.len() && kinds[i] == LineKind::Added {
                    i += 1;
                }
                let removed = added_start - removed_start;
                let added = i - added_start;
                for k in 0..removed.max(added) {
                    rows.push(SideBySideRow {
                        left: (k < removed).then_some(removed_start + k),
                        right: (k < added).then_some(added_start + k),
                    });
                }
            }
        }
    }
    rows
}

/// A fix as a form submission that the server refused, so the page can show it again
/// with the reason instead of losing what was typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedSubmission {
    /// Why it was refused.
    pub error: String,
    /// Title as typed.
    pub title: String,
    /// CVE ids as typed.
    pub cves: String,
    /// CVSS vector as typed.
    pub cvss_vector: String,
    /// Category as chosen.
    pub category: String,
    /// Tier as chosen.
    pub tier: String,
    /// Report time as typed.
    pub reported_at: String,
    /// Pasted diff (an uploaded file is not echoed back).
    pub diff: String,
}

/// Errors a page or server function reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppError {
    /// No session, or the session expired.
    NotSignedIn,
    /// Signed in, but not allowed.
    Forbidden(String),
    /// The thing asked for does not exist.
    NotFound(String),
    /// The request is malformed: the message says what to fix.
    Invalid(String),
    /// Something failed on the server; details are in the server log only.
    Internal,
    /// The request did not reach the server, or its answer did not come back.
    Transport(String),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::NotSignedIn => f.write_str("not signed in"),
            AppError::Forbidden(why) => write!(f, "not allowed: {why}"),
            AppError::NotFound(what) => write!(f, "{what} not found"),
            AppError::Invalid(why) => f.write_str(why),
            AppError::Internal => f.write_str("internal error (details are in the server log)"),
            AppError::Transport(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl std::error::Error for AppError {}

impl AppError {
    /// How the page answers it: the same status table as the JSON API's errors.
    pub fn refusal(&self) -> graftbench_domain::Refusal {
        use graftbench_domain::Refusal;
        match self {
            AppError::NotSignedIn => Refusal::NotSignedIn,
            AppError::Forbidden(_) => Refusal::Forbidden,
            AppError::NotFound(_) => Refusal::NotFound,
            AppError::Invalid(_) => Refusal::Invalid,
            AppError::Internal | AppError::Transport(_) => Refusal::Internal,
        }
    }
}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
        // On the server, arguments that do not decode are the client's mistake: 400, not
        // the 500 server_fn answers errors with.
        #[cfg(feature = "ssr")]
        {
            use leptos::server_fn::error::ServerFnErrorErr as E;
            if matches!(
                value,
                E::Args(_)
                    | E::MissingArg(_)
                    | E::Deserialization(_)
                    | E::UnsupportedRequestMethod(_)
            ) {
                crate::api::ssr::set_status(400);
            }
        }
        AppError::Transport(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LineKind::*;

    fn pairs(kinds: &[LineKind]) -> Vec<(Option<usize>, Option<usize>)> {
        side_by_side(kinds)
            .into_iter()
            .map(|r| (r.left, r.right))
            .collect()
    }

    #[test]
    fn context_faces_itself_and_changes_pair_up() {
        assert_eq!(
            pairs(&[Context, Removed, Removed, Added, Context]),
            vec![
                (Some(0), Some(0)),
                (Some(1), Some(3)),
                (Some(2), None),
                (Some(4), Some(4)),
            ]
        );
    }

    #[test]
    fn added_block_longer_than_removed_block_runs_on_alone() {
        assert_eq!(
            pairs(&[Removed, Added, Added, Added]),
            vec![(Some(0), Some(1)), (None, Some(2)), (None, Some(3))]
        );
    }

    #[test]
    fn pure_insertion_has_no_left_side() {
        assert_eq!(
            pairs(&[Added, Added]),
            vec![(None, Some(0)), (None, Some(1))]
        );
    }

    #[test]
    fn roles_round_trip_through_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("security-officer"), Some(Role::SecurityOfficer));
        assert_eq!(Role::parse("root"), None);
    }
}

/// A message for the next page the user sees (a refused form's reason), which the server
/// keeps in the session and puts into that page's request; never carried in the URL, where
/// anyone could write a link that makes a Graftbench page say something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage(pub String);

/// A kernel build registered as a target, as pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// Database id.
    pub id: i64,
    /// Its name (the release for a distribution build): the page's address.
    pub name: String,
    /// `uname -r`.
    pub kernel_release: String,
    /// `debian` or `paths`.
    pub origin: String,
    /// The distribution package version; empty for in-house builds.
    pub package_version: String,
    /// `x86_64`.
    pub arch: String,
    /// The vmlinux's GNU build-id.
    pub build_id: String,
    /// DW_AT_producer: the compiler and its flags.
    pub compiler: String,
    /// The image with debug information.
    pub vmlinux: String,
    /// Modules with debug information, when registered with them.
    pub modules_dir: Option<String>,
    /// The directory out-of-tree modules build against.
    pub kbuild_dir: Option<String>,
    /// The build's own source tree.
    pub source_dir: Option<String>,
    /// Objects indexed.
    pub objects: i64,
    /// Functions of the source.
    pub functions: i64,
    /// Inlined copies.
    pub inline_sites: i64,
    /// Clone symbols.
    pub clones: i64,
    /// The index file's size.
    pub index_bytes: i64,
    /// Bytes kept for it in the data directory.
    pub disk_bytes: i64,
    /// When its index was built.
    pub indexed_at: String,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: String,
    /// When it was retired, if it was.
    pub retired_at: Option<String>,
    /// Analyses made against it.
    pub analyses: i64,
}

/// A background job as pages show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// Its id: `/api/v1/jobs/{id}/events` streams its progress.
    pub id: i64,
    /// `target.register`, `target.reindex`, `analyze`.
    pub kind: String,
    /// What it is about, for people ("register 6.1.0-56-amd64").
    pub label: String,
    /// `queued`, `running`, `done`, `failed`, `cancelled`.
    pub state: String,
    /// What it is doing (`indexing`).
    pub phase: String,
    /// How far, 0 to 1.
    pub progress: f64,
    /// Attempts started.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// The last failure.
    pub error: Option<String>,
    /// When it last changed.
    pub updated_at: String,
}

impl JobSummary {
    /// Whether it may still change.
    pub fn is_active(&self) -> bool {
        self.state == "queued" || self.state == "running"
    }
}

/// `/targets`: the kernel builds fixes are analysed for, and registrations under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetsPage {
    /// Active targets first, then retired ones.
    pub targets: Vec<TargetSummary>,
    /// Registrations queued, running or failed recently.
    pub registrations: Vec<JobSummary>,
    /// Whether this user may add, re-index and retire targets.
    pub can_manage: bool,
    /// The directory in-house builds may be registered from, if the admin set one.
    pub target_root: Option<String>,
}

/// `/targets/{name}`: one target and its jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetPage {
    /// The target.
    pub target: TargetSummary,
    /// Its registration and index jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// Whether this user may re-index and retire it.
    pub can_manage: bool,
}

/// The impact panel of the patch page: how the shown revision fares on each target, and
/// the graph of what the compiler did with it on one of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactView {
    /// The revision.
    pub revision: i64,
    /// One row per target the patch is analysed for.
    pub targets: Vec<TargetImpact>,
    /// The target whose graph is shown.
    pub selected: Option<String>,
    /// Its graph, once its analysis has a report.
    pub graph: Option<ImpactGraph>,
    /// Why there is no graph, for people (no targets, still analysing, failed...).
    pub no_graph: Option<String>,
    /// Without targets: the registration under way (or failed), to follow.
    pub registration: Option<JobSummary>,
    /// The search the graph's lists are filtered by.
    pub query: String,
}

/// One target's row in the impact matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetImpact {
    /// The target's name.
    pub target: String,
    /// `queued`, `running`, `failed` (the job), or the analysis' outcome: `analysed`,
    /// `no_code`, `not_applicable`, `incomplete`, `failed`.
    pub state: String,
    /// The analysis job while there is one to follow.
    pub job: Option<JobSummary>,
    /// The analysis' one-line summary.
    pub summary: String,
    /// Functions to replace.
    pub replace: usize,
    /// Functions that hold changed code and cannot be replaced.
    pub cannot_replace: usize,
    /// Pitfalls found.
    pub pitfalls: usize,
    /// Hunks that do not apply (or are applied already, or contradict the build).
    pub hunks_not_applied: usize,
    /// Where it differs from the other targets, for people.
    pub differences: Vec<String>,
}

/// The layered impact graph of one analysis, laid out by the server: hunks, changed
/// functions, where their code went, and what the live patch replaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpactGraph {
    /// Drawing width, px.
    pub width: u32,
    /// Drawing height, px.
    pub height: u32,
    /// The layers' headings, with their x.
    pub columns: Vec<GraphColumn>,
    /// The nodes drawn.
    pub nodes: Vec<GraphNode>,
    /// The edges drawn.
    pub edges: Vec<GraphEdge>,
    /// Groups standing for many functions of one object and directory, with members.
    pub groups: Vec<GraphGroup>,
    /// Functions that cannot be replaced, and what was done instead.
    pub cannot_replace: Vec<CannotReplace>,
    /// Nodes left out by the search.
    pub hidden_by_search: usize,
}

/// A layer heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphColumn {
    /// Heading.
    pub title: String,
    /// Left edge, px.
    pub x: u32,
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A hunk of the fix that was analysed.
    Hunk,
    /// A hunk that was not analysed (does not apply, already applied, contradicts the build).
    HunkNotApplied,
    /// A function whose source the fix changes.
    Changed,
    /// A function the changed code went into on the way (an inlining, a clone, a caller).
    Site,
    /// A function the live patch replaces.
    Replace,
    /// A function that holds changed code and cannot be replaced.
    Blocked,
    /// Many functions of one object and directory.
    Group,
}

impl NodeKind {
    /// Its CSS class.
    pub fn class(self) -> &'static str {
        match self {
            NodeKind::Hunk => "hunk",
            NodeKind::HunkNotApplied => "hunk not-applied",
            NodeKind::Changed => "changed",
            NodeKind::Site => "site",
            NodeKind::Replace => "replace",
            NodeKind::Blocked => "blocked",
            NodeKind::Group => "group",
        }
    }
}

/// One node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphNode {
    /// Kind.
    pub kind: NodeKind,
    /// Its layer (0: hunks).
    pub layer: u32,
    /// Left, px.
    pub x: u32,
    /// Top, px.
    pub y: u32,
    /// Width, px.
    pub w: u32,
    /// First line: the function (or hunk, or group) name, shortened to fit.
    pub label: String,
    /// Second line: object, `old_sympos`, marks ("ABI changed", "clone", "12 functions").
    pub detail: String,
    /// Everything about it, for its title and screen readers.
    pub title: String,
    /// The diff cells its code came from (`data-k` keys: `f{file}-o{old}`, `f{file}-n{new}`).
    pub lines: Vec<String>,
    /// Nodes on a path through it, itself included (indexes into [`ImpactGraph::nodes`]).
    pub related: Vec<u32>,
    /// Edges on a path through it (indexes into [`ImpactGraph::edges`]).
    pub related_edges: Vec<u32>,
    /// The group it stands for ([`ImpactGraph::groups`]).
    pub group: Option<u32>,
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphEdge {
    /// From node.
    pub from: u32,
    /// To node.
    pub to: u32,
    /// What ties them ("inlined at cmdline.c:12", "calls", "ABI changed: callers").
    pub label: String,
    /// The SVG path.
    pub d: String,
}

/// Many functions of one layer, object and directory, drawn as one node and listed
/// (collapsed) under the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphGroup {
    /// `vmlinux · fs/ext4`.
    pub name: String,
    /// The layer's heading it belongs to.
    pub layer: String,
    /// Its functions (those the search kept), each with the way its code got there.
    pub members: Vec<GroupMember>,
    /// All its functions, before the search.
    pub total: usize,
}

/// One function of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMember {
    /// The function (symbol, with `old_sympos` when not 0).
    pub name: String,
    /// How the changed code got there, for people.
    pub why: String,
}

/// A function that cannot be replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannotReplace {
    /// The symbol.
    pub symbol: String,
    /// Its object.
    pub object: String,
    /// Why not.
    pub why: String,
    /// What was done instead.
    pub resolution: String,
}
