//! The tamper-evident audit trail.
//!
//! Every event is written in the same database transaction as the change it records, with
//! a sequence number, its time, actor, action, subject and details, the previous event's
//! hash and its own: SHA-256 over a canonical encoding of all those fields (each one
//! length-prefixed, so no two different events encode alike). `audit_head` keeps the last
//! sequence number and hash; an append updates it first, which serialises writers on both
//! databases. [`verify_chain`] walks the events and names the first one that does not fit:
//! an edited row no longer matches its hash, a deleted or reordered one breaks the links
//! or the numbering, a deleted tail disagrees with the head.

pub use crate::SignOffKind;
use sha2::{Digest, Sha256};
use std::fmt;

/// Every kind of event Graftbench writes. The string form is what the trail stores and
/// what each event's hash covers: it never changes, or existing trails stop verifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A patch and its first revision were submitted.
    PatchSubmitted,
    /// A draft was sent for review.
    PatchSubmittedForReview,
    /// A patch was turned down for good.
    PatchDeclined,
    /// Its author took a patch back.
    PatchWithdrawn,
    /// A withdrawn patch went back to draft.
    PatchReopened,
    /// The state computed from the sign-offs changed.
    PatchStateChanged,
    /// A new revision was uploaded.
    RevisionUploaded,
    /// A sign-off with this verdict (or the exception sign-off) was given.
    SignOff(SignOffKind),
    /// A sign-off was withdrawn by its author.
    SignOffWithdrawn,
    /// A comment was added.
    CommentAdded,
    /// A thread was resolved.
    CommentResolved,
    /// Someone was asked to review a patch.
    ReviewRequested,
    /// A request to review a patch was taken back.
    ReviewRequestCancelled,
    /// A resolved thread was opened again.
    CommentReopened,
    /// An account was made.
    UserCreated,
    /// An account's roles in force changed.
    UserRolesChanged,
    /// Roles were granted and wait for a second admin.
    UserRoleGrantsPending,
    /// A second admin confirmed a grant.
    UserRoleGrantConfirmed,
    /// An account was disabled.
    UserDisabled,
    /// An account was enabled again.
    UserEnabled,
    /// An account's password was set.
    UserPasswordChanged,
    /// Someone signed in.
    SessionSignedIn,
    /// A sign-in failed.
    SessionSignInFailed,
    /// A sign-in was refused by the limits.
    SessionSignInLocked,
    /// The audit trail (or part of it) was exported.
    AuditExported,
    /// An evidence bundle (of one change or of a period) was exported.
    AuditEvidenceExported,
    /// Events older than the retention policy's months moved into an archive segment.
    AuditArchived,
    /// The checkpoint key was replaced; the checkpoint of the trail up to this event is
    /// signed by both the old key and the new one it names.
    AuditKeyRotated,
    /// The server's clock read earlier than the newest event's time: events after this
    /// one may carry times before those of events before it.
    ClockSteppedBack,
    /// A kernel build was registered as a target (its files in place, its index built).
    TargetAdded,
    /// A target's index was built again.
    TargetReindexed,
    /// A target was retired: kept for history, no new analyses.
    TargetRetired,
    /// A revision was analysed against a target: the functions to replace.
    AnalysisRecorded,
}

impl AuditAction {
    /// Every action, for listings and tests.
    pub const ALL: [AuditAction; 35] = [
        AuditAction::PatchSubmitted,
        AuditAction::PatchSubmittedForReview,
        AuditAction::PatchDeclined,
        AuditAction::PatchWithdrawn,
        AuditAction::PatchReopened,
        AuditAction::PatchStateChanged,
        AuditAction::RevisionUploaded,
        AuditAction::SignOff(SignOffKind::Approve),
        AuditAction::SignOff(SignOffKind::Reject),
        AuditAction::SignOff(SignOffKind::Exception),
        AuditAction::SignOffWithdrawn,
        AuditAction::CommentAdded,
        AuditAction::CommentResolved,
        AuditAction::CommentReopened,
        AuditAction::ReviewRequested,
        AuditAction::ReviewRequestCancelled,
        AuditAction::UserCreated,
        AuditAction::UserRolesChanged,
        AuditAction::UserRoleGrantsPending,
        AuditAction::UserRoleGrantConfirmed,
        AuditAction::UserDisabled,
        AuditAction::UserEnabled,
        AuditAction::UserPasswordChanged,
        AuditAction::SessionSignedIn,
        AuditAction::SessionSignInFailed,
        AuditAction::SessionSignInLocked,
        AuditAction::AuditExported,
        AuditAction::AuditEvidenceExported,
        AuditAction::AuditArchived,
        AuditAction::AuditKeyRotated,
        AuditAction::ClockSteppedBack,
        AuditAction::TargetAdded,
        AuditAction::TargetReindexed,
        AuditAction::TargetRetired,
        AuditAction::AnalysisRecorded,
    ];

    /// The stored name, e.g. `patch.submitted`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::PatchSubmitted => "patch.submitted",
            AuditAction::PatchSubmittedForReview => "patch.submitted_for_review",
            AuditAction::PatchDeclined => "patch.declined",
            AuditAction::PatchWithdrawn => "patch.withdrawn",
            AuditAction::PatchReopened => "patch.reopened",
            AuditAction::PatchStateChanged => "patch.state_changed",
            AuditAction::RevisionUploaded => "revision.uploaded",
            AuditAction::SignOff(SignOffKind::Approve) => "sign_off.approve",
            AuditAction::SignOff(SignOffKind::Reject) => "sign_off.reject",
            AuditAction::SignOff(SignOffKind::Exception) => "sign_off.exception",
            AuditAction::SignOffWithdrawn => "sign_off.withdrawn",
            AuditAction::CommentAdded => "comment.added",
            AuditAction::CommentResolved => "comment.resolved",
            AuditAction::CommentReopened => "comment.reopened",
            AuditAction::ReviewRequested => "review.requested",
            AuditAction::ReviewRequestCancelled => "review.request_cancelled",
            AuditAction::UserCreated => "user.created",
            AuditAction::UserRolesChanged => "user.roles_changed",
            AuditAction::UserRoleGrantsPending => "user.role_grants_pending",
            AuditAction::UserRoleGrantConfirmed => "user.role_grant_confirmed",
            AuditAction::UserDisabled => "user.disabled",
            AuditAction::UserEnabled => "user.enabled",
            AuditAction::UserPasswordChanged => "user.password_changed",
            AuditAction::SessionSignedIn => "session.signed_in",
            AuditAction::SessionSignInFailed => "session.sign_in_failed",
            AuditAction::SessionSignInLocked => "session.sign_in_locked",
            AuditAction::AuditExported => "audit.exported",
            AuditAction::AuditEvidenceExported => "audit.evidence_exported",
            AuditAction::AuditArchived => "audit.archived",
            AuditAction::AuditKeyRotated => "audit.key_rotated",
            AuditAction::ClockSteppedBack => "clock.stepped_back",
            AuditAction::TargetAdded => "target.added",
            AuditAction::TargetReindexed => "target.reindexed",
            AuditAction::TargetRetired => "target.retired",
            AuditAction::AnalysisRecorded => "analysis.recorded",
        }
    }

    /// Parses [`AuditAction::as_str`].
    pub fn parse(name: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CSV cell that a spreadsheet shows as text: a value starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return would be read as a formula (CSV injection), so it gets a
/// leading `'`. Quoting is the CSV writer's job.
pub fn neutralised_csv_cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// What an event is about: `patch:7`, `user:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditSubject {
    /// A patch.
    Patch(crate::PatchId),
    /// An account, by user name (names are what people search the trail for).
    User(String),
    /// The audit trail itself (an export).
    Trail,
    /// A kernel target, by its name.
    Target(String),
}

impl fmt::Display for AuditSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditSubject::Patch(id) => write!(f, "patch:{id}"),
            AuditSubject::User(name) => write!(f, "user:{name}"),
            AuditSubject::Trail => f.write_str("audit:trail"),
            AuditSubject::Target(name) => write!(f, "target:{name}"),
        }
    }
}

/// The previous hash of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event as stored (and as exports write it: the same field names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: String,
    /// The user name of who did it (`system` for the command line's own actions).
    pub actor: String,
    /// What, e.g. `patch.submitted`.
    pub action: String,
    /// On what, e.g. `patch:7`.
    pub subject: String,
    /// JSON details, as stored.
    pub details: String,
    /// The previous event's hash.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// The fields an event's hash covers, in the order they are hashed.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    /// Its sequence number.
    pub seq: i64,
    /// RFC 3339 UTC.
    pub at: &'a str,
    /// Who.
    pub actor: &'a str,
    /// What ([`AuditAction::as_str`] for the events Graftbench writes).
    pub action: &'a str,
    /// On what ([`AuditSubject`]'s text).
    pub subject: &'a str,
    /// JSON details, as stored.
    pub details: &'a str,
    /// The previous event's hash.
    pub prev_hash: &'a str,
}

impl EventFields<'_> {
    /// The event's hash: SHA-256 over a domain tag and each field length-prefixed, as hex.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"graftbench-audit-v1\0");
        let seq = self.seq.to_string();
        for field in [
            seq.as_str(),
            self.at,
            self.actor,
            self.action,
            self.subject,
            self.details,
            self.prev_hash,
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

impl AuditEvent {
    /// The fields its hash covers.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            seq: self.seq,
            at: &self.at,
            actor: &self.actor,
            action: &self.action,
            subject: &self.subject,
            details: &self.details,
            prev_hash: &self.prev_hash,
        }
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit trail is broken at event #{seq}: {why}")]
pub struct BrokenChain {
    /// The first sequence number that does not fit.
    pub seq: i64,
    /// How.
    pub why: String,
}

/// A walk along the chain, one event at a time: each must have the next sequence number,
/// link to the one before and match its own hash. Starts at the beginning, or after an
/// event already known good (incremental checks from a checkpoint).
#[derive(Debug, Clone)]
pub struct ChainWalk {
    next_seq: i64,
    prev_hash: String,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk::after(0, GENESIS)
    }
}

impl ChainWalk {
    /// A walk that continues after event `seq` whose hash is `hash` (0 and the genesis
    /// hash: from the start).
    pub fn after(seq: i64, hash: &str) -> ChainWalk {
        ChainWalk {
            next_seq: seq + 1,
            prev_hash: hash.to_owned(),
        }
    }

    /// Checks the next event.
    pub fn step(&mut self, event: &AuditEvent) -> Result<(), BrokenChain> {
        let expected = self.next_seq;
        let broken = |why: String| BrokenChain { seq: expected, why };
        if event.seq != expected {
            return Err(broken(format!(
                "found #{} where #{expected} belongs (a deleted or renumbered event)",
                event.seq
            )));
        }
        if event.prev_hash != self.prev_hash {
            return Err(broken(
                "it does not link to the event before it (deleted, inserted or reordered)".into(),
            ));
        }
        let hash = event.fields().hash();
        if hash != event.hash {
            return Err(broken("its contents do not match its hash (edited)".into()));
        }
        self.prev_hash = hash;
        self.next_seq += 1;
        Ok(())
    }

    /// The last event checked: its sequence number and hash.
    pub fn last(&self) -> (i64, &str) {
        (self.next_seq - 1, &self.prev_hash)
    }

    /// Checks that the walk ended where the trail's head says the trail ends.
    pub fn ends_at(&self, head: (i64, &str)) -> Result<(), BrokenChain> {
        let (last, hash) = self.last();
        if head.0 != last || head.1 != hash {
            return Err(BrokenChain {
                seq: last + 1,
                why: format!(
                    "the head records event #{} but the trail ends at #{last} (events deleted from the end)",
                    head.0
                ),
            });
        }
        Ok(())
    }
}

/// Checks events (in storage order by sequence number) against each other and the head,
/// continuing `walk` (from the start, or after the events archived before them). Returns
/// the number of events.
pub fn verify_chain(
    mut walk: ChainWalk,
    events: &[AuditEvent],
    head: (i64, &str),
) -> Result<usize, BrokenChain> {
    for event in events {
        walk.step(event)?;
    }
    walk.ends_at(head)?;
    Ok(events.len())
}

/// Rows of the tables whose every row an audit event must explain, as
/// [`unexplained_rows`] compares them.
#[derive(Debug, Clone, Default)]
pub struct ExplainedTables {
    /// Sign-offs: (id, patch id, revision, revision SHA-256, user name, verdict).
    pub sign_offs: Vec<(i64, i64, i64, String, String, String)>,
    /// Revisions: (patch id, number, SHA-256).
    pub revisions: Vec<(i64, i64, String)>,
    /// Roles in force: (user name, role).
    pub roles: Vec<(String, String)>,
    /// Accounts: (user name, disabled).
    pub accounts: Vec<(String, bool)>,
}

/// Rows that no audit event explains: a sign-off, revision or role written into the
/// database without going through Graftbench, or a disabled account enabled that way.
///
/// Each sign-off and revision row must match an event that recorded it (same patch,
/// revision, hash, user and verdict; each event explains one row). Roles and the disabled
/// flag are replayed from the account events in order (`user.created`,
/// `user.roles_changed`, `user.role_grant_confirmed`, `user.disabled`, `user.enabled`),
/// and what the database holds beyond the replay is named. The chain itself is checked by
/// [`verify_chain`]; this finds rows added or changed beside an intact chain.
pub fn unexplained_rows(events: &[AuditEvent], tables: &ExplainedTables) -> Vec<String> {
    use std::collections::{BTreeSet, HashMap};
    let patch_of = |subject: &str| subject.strip_prefix("patch:")?.parse::<i64>().ok();
    let user_of = |subject: &str| subject.strip_prefix("user:").map(str::to_owned);
    let mut sign_off_events: HashMap<(i64, i64, String, String, String), usize> = HashMap::new();
    let mut revision_events: HashMap<(i64, i64, String), usize> = HashMap::new();
    let mut roles: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut disabled: HashMap<String, bool> = HashMap::new();
    for event in events {
        let details: serde_json::Value =
            serde_json::from_str(&event.details).unwrap_or(serde_json::Value::Null);
        let int = |key: &str| details.get(key).and_then(serde_json::Value::as_i64);
        let text = |key: &str| {
            details
                .get(key)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let list = |key: &str| -> BTreeSet<String> {
            details
                .get(key)
                .and_then(serde_json::Value::as_array)
                .map(|roles| {
                    roles
                        .iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let Some(action) = AuditAction::parse(&event.action) else {
            continue;
        };
        match action {
            AuditAction::SignOff(_) => {
                if let (Some(patch), Some(revision)) = (patch_of(&event.subject), int("revision")) {
                    let verdict = event.action["sign_off.".len()..].to_owned();
                    *sign_off_events
                        .entry((
                            patch,
                            revision,
                            text("sha256"),
                            event.actor.clone(),
                            verdict,
                        ))
                        .or_default() += 1;
                }
            }
            AuditAction::PatchSubmitted | AuditAction::RevisionUploaded => {
                if let (Some(patch), Some(revision)) = (patch_of(&event.subject), int("revision")) {
                    *revision_events
                        .entry((patch, revision, text("sha256")))
                        .or_default() += 1;
                }
            }
            AuditAction::UserCreated => {
                if let Some(user) = user_of(&event.subject) {
                    roles.insert(user, list("roles"));
                }
            }
            AuditAction::UserRolesChanged => {
                if let Some(user) = user_of(&event.subject) {
                    roles.insert(user, list("to"));
                }
            }
            AuditAction::UserRoleGrantConfirmed => {
                if let Some(user) = user_of(&event.subject) {
                    roles.entry(user).or_default().insert(text("role"));
                }
            }
            AuditAction::UserDisabled | AuditAction::UserEnabled => {
                if let Some(user) = user_of(&event.subject) {
                    // Enabled by an admin under four eyes: its signing roles wait again.
                    if let Some(held) = roles.get_mut(&user) {
                        for role in list("roles_waiting_for_a_second_admin") {
                            held.remove(&role);
                        }
                    }
                    disabled.insert(user, action == AuditAction::UserDisabled);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for (id, patch, revision, sha256, user, verdict) in &tables.sign_offs {
        let key = (
            *patch,
            *revision,
            sha256.clone(),
            user.clone(),
            verdict.clone(),
        );
        match sign_off_events.get_mut(&key) {
            Some(n) if *n > 0 => *n -= 1,
            _ => found.push(format!(
                "sign-off #{id} ({user}: {verdict} on revision {revision} of patch {patch}) \
                 is in the database, but no audit event records it"
            )),
        }
    }
    for (patch, number, sha256) in &tables.revisions {
        match revision_events.get_mut(&(*patch, *number, sha256.clone())) {
            Some(n) if *n > 0 => *n -= 1,
            _ => found.push(format!(
                "revision {number} of patch {patch} (sha256 {sha256}) is in the database, \
                 but no audit event records it"
            )),
        }
    }
    for (user, role) in &tables.roles {
        if !roles.get(user).is_some_and(|held| held.contains(role)) {
            found.push(format!(
                "user {user} holds the role {role}, but no audit event granted it"
            ));
        }
    }
    for (user, is_disabled) in &tables.accounts {
        let recorded = disabled.get(user).copied().unwrap_or(false);
        if recorded != *is_disabled {
            found.push(format!(
                "user {user} is {}, but the audit trail says {}",
                if *is_disabled { "disabled" } else { "enabled" },
                if recorded { "disabled" } else { "enabled" },
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<AuditEvent> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let at = format!("2026-11-27T10:00:0{seq}.000Z");
                let details = format!("{{\"n\":{seq}}}");
                let mut event = AuditEvent {
                    seq,
                    at,
                    actor: "alice".into(),
                    action: "patch.submitted".into(),
                    subject: "patch:1".into(),
                    details,
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                event.hash = event.fields().hash();
                let hash = event.hash.clone();
                prev = hash;
                event
            })
            .collect()
    }

    fn head(events: &[AuditEvent]) -> (i64, String) {
        events
            .last()
            .map_or((0, GENESIS.to_owned()), |e| (e.seq, e.hash.clone()))
    }

    #[test]
    fn an_intact_chain_verifies() {
        let events = chain(5);
        let (seq, hash) = head(&events);
        assert_eq!(
            verify_chain(ChainWalk::default(), &events, (seq, &hash)),
            Ok(5)
        );
        assert_eq!(verify_chain(ChainWalk::default(), &[], (0, GENESIS)), Ok(0));
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_event() {
        let events = chain(5);
        let (seq, hash) = head(&events);
        let first_bad = |events: &[AuditEvent]| {
            verify_chain(ChainWalk::default(), events, (seq, &hash))
                .unwrap_err()
                .seq
        };

        let mut edited = events.clone();
        edited[2].details = "{\"n\":99}".into();
        assert_eq!(first_bad(&edited), 3);

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(first_bad(&deleted), 2);

        // Reordered by swapping two rows' contents but keeping the numbering.
        let mut swapped = events.clone();
        swapped.swap(1, 2);
        swapped[1].seq = 2;
        swapped[2].seq = 3;
        assert_eq!(first_bad(&swapped), 2);

        // Rehashed after an edit, without fixing the next link: caught at the next one.
        let mut rehashed = events.clone();
        rehashed[2].actor = "mallory".into();
        let e = &rehashed[2];
        rehashed[2].hash = e.fields().hash();
        assert_eq!(first_bad(&rehashed), 4);

        let truncated = &events[..4];
        let error = verify_chain(ChainWalk::default(), truncated, (seq, &hash)).unwrap_err();
        assert_eq!(error.seq, 5);
        assert!(error.why.contains("deleted from the end"), "{}", error.why);
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        let fields = |actor, action| EventFields {
            seq: 1,
            at: "t",
            actor,
            action,
            subject: "s",
            details: "d",
            prev_hash: GENESIS,
        };
        assert_ne!(fields("ab", "c").hash(), fields("a", "bc").hash());
    }

    /// Trails written before this type existed must still verify: the encoding and every
    /// action's name are fixed.
    #[test]
    fn the_hash_and_the_action_names_are_those_of_existing_trails() {
        let fields = EventFields {
            seq: 1,
            at: "2026-11-27T10:00:01.000Z",
            actor: "alice",
            action: AuditAction::PatchSubmitted.as_str(),
            subject: &AuditSubject::Patch(crate::PatchId(7)).to_string(),
            details: r#"{"revision":1}"#,
            prev_hash: GENESIS,
        };
        assert_eq!(
            fields.hash(),
            "184c378658a259f401bf0ba97dd5796aa8393fe3d721a5992d6847ebaa674449"
        );
        let names: Vec<&str> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.as_str()), Some(action));
        }
        assert_eq!(AuditSubject::User("bob".into()).to_string(), "user:bob");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_text() {
        for formula in ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx", "\rx"] {
            let cell = neutralised_csv_cell(formula);
            assert_eq!(cell, format!("'{formula}"), "{formula:?}");
        }
        for plain in ["alice", "patch:7", "", "1-2", "a=b", "'x"] {
            assert_eq!(neutralised_csv_cell(plain), plain);
        }
    }
}
