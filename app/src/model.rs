//! Plain data exchanged between the server and the hydrated pages.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A role a user may hold; a user may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Uploads fixes and writes livepatch sources.
    Author,
    /// Reads diffs and impact, signs off on revisions.
    Reviewer,
    /// Confirms eligibility (CVSS, category exceptions).
    SecurityOfficer,
    /// Builds, signs and publishes releases.
    ReleaseManager,
    /// Reads everything, changes nothing.
    Auditor,
    /// Manages users and policy.
    Admin,
}

impl Role {
    /// Every role, in display order.
    pub const ALL: [Role; 6] = [
        Role::Author,
        Role::Reviewer,
        Role::SecurityOfficer,
        Role::ReleaseManager,
        Role::Auditor,
        Role::Admin,
    ];

    /// The stable name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Author => "author",
            Role::Reviewer => "reviewer",
            Role::SecurityOfficer => "security_officer",
            Role::ReleaseManager => "release_manager",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Role::Author => "author",
            Role::Reviewer => "reviewer",
            Role::SecurityOfficer => "security officer",
            Role::ReleaseManager => "release manager",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses [`Role::as_str`] (dashes are accepted for underscores).
    pub fn parse(name: &str) -> Option<Role> {
        let name = name.trim().replace('-', "_");
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The signed-in user, as the server resolved it for this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    /// Database id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Roles held.
    pub roles: Vec<Role>,
}

impl SessionUser {
    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchPage {
    /// The patch.
    pub info: PatchInfo,
    /// All revisions, oldest first.
    pub revisions: Vec<RevisionSummary>,
    /// The revision on screen.
    pub shown: RevisionView,
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
    /// The hunks.
    pub hunks: Vec<HunkView>,
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
            AppError::Internal => f.write_str("internal error (details are in the server log)"),
            AppError::Transport(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl std::error::Error for AppError {}

impl leptos::server_fn::error::FromServerFnError for AppError {
    type Encoder = leptos::server_fn::codec::JsonEncoding;

    fn from_server_fn_error(value: leptos::server_fn::error::ServerFnErrorErr) -> Self {
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
