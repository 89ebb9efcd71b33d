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
