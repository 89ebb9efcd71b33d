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

use crate::clock;
use crate::db::{Database, DbError};
use sha2::{Digest, Sha256};
use sqlx::Row;

/// The previous hash of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// The hash of an event's fields.
pub fn event_hash(
    seq: i64,
    at: &str,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev_hash: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"graftbench-audit-v1\0");
    let seq = seq.to_string();
    for field in [seq.as_str(), at, actor, action, subject, details, prev_hash] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
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

/// Checks events (in storage order by sequence number) against each other and the head.
/// Returns the number of events.
pub fn verify_chain(events: &[AuditEvent], head: (i64, &str)) -> Result<usize, BrokenChain> {
    let mut prev = GENESIS.to_owned();
    for (expected, event) in (1_i64..).zip(events) {
        let broken = |why: String| BrokenChain { seq: expected, why };
        if event.seq != expected {
            return Err(broken(format!(
                "found #{} where #{expected} belongs (a deleted or renumbered event)",
                event.seq
            )));
        }
        if event.prev_hash != prev {
            return Err(broken(
                "it does not link to the event before it (deleted, inserted or reordered)".into(),
            ));
        }
        let hash = event_hash(
            event.seq,
            &event.at,
            &event.actor,
            &event.action,
            &event.subject,
            &event.details,
            &event.prev_hash,
        );
        if hash != event.hash {
            return Err(broken("its contents do not match its hash (edited)".into()));
        }
        prev = hash;
    }
    let last = i64::try_from(events.len()).unwrap_or(i64::MAX);
    if head.0 != last || head.1 != prev {
        return Err(BrokenChain {
            seq: last + 1,
            why: format!(
                "the head records event #{} but the trail ends at #{last} (events deleted from the end)",
                head.0
            ),
        });
    }
    Ok(events.len())
}

/// Appends an event inside `tx`, the transaction of the change it records.
pub async fn append(
    tx: &mut sqlx::AnyConnection,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<i64, DbError> {
    // Updating the head first takes its row lock (PostgreSQL) or the write lock (SQLite):
    // concurrent appends queue here instead of forking the chain.
    let row = sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
        .fetch_one(&mut *tx)
        .await?;
    let seq: i64 = row.try_get("seq")?;
    let prev_hash: String = row.try_get("hash")?;
    let at = clock::now();
    let details = details.to_string();
    let hash = event_hash(seq, &at, actor, action, subject, &details, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(seq)
    .bind(&at)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(&details)
    .bind(&prev_hash)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
    Ok(seq)
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEvent, DbError> {
    Ok(AuditEvent {
        seq: r.try_get("seq")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        subject: r.try_get("subject")?,
        details: r.try_get("details")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Database {
    /// The newest `limit` events matching `filter` (oldest first), and how many match.
    /// An action filter ending in `.` matches every action it starts (`sign_off.`).
    pub async fn search_audit(
        &self,
        filter: &graftbench_app::model::AuditFilter,
        limit: i64,
    ) -> Result<(Vec<AuditEvent>, i64), DbError> {
        let action = filter.action.trim();
        let (exact, prefix) = if action.ends_with('.') {
            ("", action)
        } else {
            (action, "")
        };
        const MATCH: &str = "($1 = '' OR actor = $1)
               AND ($2 = '' OR action = $2)
               AND ($3 = '' OR substr(action, 1, length($3)) = $3)
               AND ($4 = '' OR subject = $4)";
        let matched: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_events WHERE {MATCH}"))
                .bind(filter.actor.trim())
                .bind(exact)
                .bind(prefix)
                .bind(filter.subject.trim())
                .fetch_one(self.pool())
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash
             FROM audit_events WHERE {MATCH} ORDER BY seq DESC LIMIT $5"
        ))
        .bind(filter.actor.trim())
        .bind(exact)
        .bind(prefix)
        .bind(filter.subject.trim())
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        events.reverse();
        Ok((events, matched))
    }

    /// Records an event on its own (for actions that change nothing else, like signing in).
    pub async fn record(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<i64, DbError> {
        let mut tx = self.pool().begin().await?;
        let seq = append(&mut tx, actor, action, subject, details).await?;
        tx.commit().await?;
        Ok(seq)
    }

    /// Every event, by sequence number.
    pub async fn audit_events(&self) -> Result<Vec<AuditEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash
             FROM audit_events ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// The sign-offs, revisions, roles and accounts whose rows no audit event explains
    /// ([`unexplained_rows`]).
    pub async fn unexplained_rows(&self) -> Result<Vec<String>, DbError> {
        let events = self.audit_events().await?;
        let mut tables = ExplainedTables::default();
        for r in sqlx::query(
            "SELECT s.id, s.patch_id, s.revision, s.revision_sha256, u.username, s.verdict
             FROM sign_offs s JOIN users u ON u.id = s.user_id ORDER BY s.id",
        )
        .fetch_all(self.pool())
        .await?
        {
            tables.sign_offs.push((
                r.try_get("id")?,
                r.try_get("patch_id")?,
                r.try_get("revision")?,
                r.try_get("revision_sha256")?,
                r.try_get("username")?,
                r.try_get("verdict")?,
            ));
        }
        for r in sqlx::query(
            "SELECT patch_id, number, diff_sha256 FROM revisions ORDER BY patch_id, number",
        )
        .fetch_all(self.pool())
        .await?
        {
            tables.revisions.push((
                r.try_get("patch_id")?,
                r.try_get("number")?,
                r.try_get("diff_sha256")?,
            ));
        }
        for r in sqlx::query(
            "SELECT u.username, r.role FROM user_roles r JOIN users u ON u.id = r.user_id
             ORDER BY u.username, r.role",
        )
        .fetch_all(self.pool())
        .await?
        {
            tables
                .roles
                .push((r.try_get("username")?, r.try_get("role")?));
        }
        for r in sqlx::query("SELECT username, disabled_at FROM users ORDER BY username")
            .fetch_all(self.pool())
            .await?
        {
            let disabled: Option<String> = r.try_get("disabled_at")?;
            tables
                .accounts
                .push((r.try_get("username")?, disabled.is_some()));
        }
        Ok(unexplained_rows(&events, &tables))
    }

    /// Walks the whole trail: the number of events, or the first broken link.
    pub async fn verify_audit(&self) -> Result<Result<usize, BrokenChain>, DbError> {
        let events = self.audit_events().await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        let seq: i64 = head.try_get("seq")?;
        let hash: String = head.try_get("hash")?;
        Ok(verify_chain(&events, (seq, &hash)))
    }
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
        match event.action.as_str() {
            "sign_off.approve" | "sign_off.reject" | "sign_off.exception" => {
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
            "patch.submitted" | "revision.uploaded" => {
                if let (Some(patch), Some(revision)) = (patch_of(&event.subject), int("revision")) {
                    *revision_events
                        .entry((patch, revision, text("sha256")))
                        .or_default() += 1;
                }
            }
            "user.created" => {
                if let Some(user) = user_of(&event.subject) {
                    roles.insert(user, list("roles"));
                }
            }
            "user.roles_changed" => {
                if let Some(user) = user_of(&event.subject) {
                    roles.insert(user, list("to"));
                }
            }
            "user.role_grant_confirmed" => {
                if let Some(user) = user_of(&event.subject) {
                    roles.entry(user).or_default().insert(text("role"));
                }
            }
            "user.disabled" | "user.enabled" => {
                if let Some(user) = user_of(&event.subject) {
                    // Enabled by an admin under four eyes: its signing roles wait again.
                    if let Some(held) = roles.get_mut(&user) {
                        for role in list("roles_waiting_for_a_second_admin") {
                            held.remove(&role);
                        }
                    }
                    disabled.insert(user, event.action == "user.disabled");
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
                let hash = event_hash(
                    seq,
                    &at,
                    "alice",
                    "patch.submitted",
                    "patch:1",
                    &details,
                    &prev,
                );
                let event = AuditEvent {
                    seq,
                    at,
                    actor: "alice".into(),
                    action: "patch.submitted".into(),
                    subject: "patch:1".into(),
                    details,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
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
        assert_eq!(verify_chain(&events, (seq, &hash)), Ok(5));
        assert_eq!(verify_chain(&[], (0, GENESIS)), Ok(0));
    }

    #[test]
    fn each_kind_of_tampering_names_the_first_bad_event() {
        let events = chain(5);
        let (seq, hash) = head(&events);
        let first_bad = |events: &[AuditEvent]| verify_chain(events, (seq, &hash)).unwrap_err().seq;

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
        rehashed[2].hash = event_hash(
            e.seq,
            &e.at,
            &e.actor,
            &e.action,
            &e.subject,
            &e.details,
            &e.prev_hash,
        );
        assert_eq!(first_bad(&rehashed), 4);

        let truncated = &events[..4];
        let error = verify_chain(truncated, (seq, &hash)).unwrap_err();
        assert_eq!(error.seq, 5);
        assert!(error.why.contains("deleted from the end"), "{}", error.why);
    }

    #[test]
    fn fields_cannot_shift_into_each_other() {
        assert_ne!(
            event_hash(1, "t", "ab", "c", "s", "d", GENESIS),
            event_hash(1, "t", "a", "bc", "s", "d", GENESIS)
        );
    }
}
