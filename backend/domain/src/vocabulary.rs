//! The workflow's words: roles, states, verdicts, actions, categories and tiers. Each has
//! one stable name (`as_str`, used in the database, the API, forms and the audit trail)
//! and a label for people.

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

/// A patch's state as people see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being prepared by its author.
    Draft,
    /// Waiting for sign-offs.
    InReview,
    /// A reviewer rejected the current revision.
    ChangesRequested,
    /// Enough approvals on the current revision, and eligible.
    Approved,
    /// Turned down for good.
    Rejected,
    /// Taken back by its author.
    Withdrawn,
}

/// A sign-off's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approve the revision.
    Approve,
    /// Reject it: blocks until withdrawn or a new revision.
    Reject,
}

/// Something a person can do to a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send a draft for review.
    Submit,
    /// Upload the next revision.
    UploadRevision,
    /// Approve the current revision.
    Approve,
    /// Reject the current revision.
    Reject,
    /// Take back one's own sign-off.
    WithdrawSignOff,
    /// Sign off a data-corruption or severe-instability exception, with a justification.
    SignException,
    /// Comment on a line.
    Comment,
    /// Turn the patch down for good.
    Decline,
    /// Take the patch back (its author).
    Withdraw,
    /// Bring a withdrawn patch back to draft (its author).
    Reopen,
}

impl State {
    /// Every state, in workflow order.
    pub const ALL: [State; 6] = [
        State::Draft,
        State::InReview,
        State::ChangesRequested,
        State::Approved,
        State::Rejected,
        State::Withdrawn,
    ];

    /// The stable name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::InReview => "in_review",
            State::ChangesRequested => "changes_requested",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
        }
    }

    /// Parses [`State::as_str`].
    pub fn parse(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            State::Draft => "draft",
            State::InReview => "in review",
            State::ChangesRequested => "changes requested",
            State::Approved => "approved",
            State::Rejected => "rejected",
            State::Withdrawn => "withdrawn",
        }
    }

    /// Still moving: a draft or open for review. Closed patches have no deadline clock.
    pub fn is_active(self) -> bool {
        !matches!(self, State::Rejected | State::Withdrawn)
    }
}

impl Verdict {
    /// The stable name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }
}

impl Action {
    /// Every action, in the order the page offers them.
    pub const ALL: [Action; 10] = [
        Action::Submit,
        Action::UploadRevision,
        Action::Approve,
        Action::Reject,
        Action::WithdrawSignOff,
        Action::SignException,
        Action::Comment,
        Action::Decline,
        Action::Withdraw,
        Action::Reopen,
    ];

    /// The stable name used in the API and in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Submit => "submit",
            Action::UploadRevision => "upload_revision",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::WithdrawSignOff => "withdraw_sign_off",
            Action::SignException => "sign_exception",
            Action::Comment => "comment",
            Action::Decline => "decline",
            Action::Withdraw => "withdraw",
            Action::Reopen => "reopen",
        }
    }

    /// Parses [`Action::as_str`] (dashes are accepted for underscores).
    pub fn parse(name: &str) -> Option<Action> {
        let name = name.trim().replace('-', "_");
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// A button's label.
    pub fn label(self) -> &'static str {
        match self {
            Action::Submit => "Submit for review",
            Action::UploadRevision => "Upload a new revision",
            Action::Approve => "Approve",
            Action::Reject => "Reject",
            Action::WithdrawSignOff => "Withdraw my sign-off",
            Action::SignException => "Sign off the exception",
            Action::Comment => "Comment",
            Action::Decline => "Decline the patch",
            Action::Withdraw => "Withdraw the patch",
            Action::Reopen => "Reopen as draft",
        }
    }
}

/// What a patch fixes, as stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// A vulnerability, eligible by its CVSS score.
    Vulnerability,
    /// A bug that corrupts data: an exception.
    DataCorruption,
    /// A bug that makes the system severely unstable: an exception.
    SevereInstability,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 3] = [
        Category::Vulnerability,
        Category::DataCorruption,
        Category::SevereInstability,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Vulnerability => "vulnerability",
            Category::DataCorruption => "data_corruption",
            Category::SevereInstability => "severe_instability",
        }
    }

    /// Parses [`Category::as_str`] (dashes are accepted for underscores).
    pub fn parse(name: &str) -> Option<Category> {
        let name = name.trim().replace('-', "_");
        Category::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Category::Vulnerability => "vulnerability",
            Category::DataCorruption => "data corruption",
            Category::SevereInstability => "severe instability",
        }
    }
}

/// A change tier: how urgent, and so by when it must ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// An incident in progress.
    Incident,
    /// An emergency change.
    Emergency,
    /// A scheduled change.
    Scheduled,
}

impl Tier {
    /// Every tier, most urgent first.
    pub const ALL: [Tier; 3] = [Tier::Incident, Tier::Emergency, Tier::Scheduled];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Incident => "incident",
            Tier::Emergency => "emergency",
            Tier::Scheduled => "scheduled",
        }
    }

    /// Parses [`Tier::as_str`].
    pub fn parse(name: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == name.trim())
    }
}

/// What a stored sign-off says: a reviewer's verdict, or a security officer's sign-off
/// on an eligibility exception. Its name is the `sign_offs.verdict` column and the
/// `sign_off.*` audit action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOffKind {
    /// `sign_off.approve`
    Approve,
    /// `sign_off.reject`
    Reject,
    /// `sign_off.exception`: a security officer's sign-off on an eligibility exception.
    Exception,
}

impl SignOffKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SignOffKind::Approve => "approve",
            SignOffKind::Reject => "reject",
            SignOffKind::Exception => "exception",
        }
    }

    /// Parses [`SignOffKind::as_str`].
    pub fn parse(name: &str) -> Option<SignOffKind> {
        [
            SignOffKind::Approve,
            SignOffKind::Reject,
            SignOffKind::Exception,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

    /// The reviewer's verdict it carries; an exception sign-off carries none.
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            SignOffKind::Approve => Some(Verdict::Approve),
            SignOffKind::Reject => Some(Verdict::Reject),
            SignOffKind::Exception => None,
        }
    }
}

impl fmt::Display for SignOffKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
