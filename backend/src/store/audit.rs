//! Writing and reading the audit trail; the chain's rules are in
//! [`graftbench_domain::audit`].

use super::{Database, DbError};
use crate::clock;
use graftbench_domain::audit::{
    unexplained_rows, verify_chain, AuditAction, AuditEvent, AuditSubject, BrokenChain, ChainWalk,
    EventFields, ExplainedTables,
};
use sqlx::Row;

/// Appends an event inside `tx`, the transaction of the change it records. When the clock
/// reads earlier than the newest event's time, a `clock.stepped_back` event goes first, so
/// that the out-of-order times that follow are explained in the trail itself.
pub async fn append(
    tx: &mut sqlx::AnyConnection,
    actor: &str,
    action: AuditAction,
    subject: &AuditSubject,
    details: &serde_json::Value,
) -> Result<i64, DbError> {
    // Updating the head first takes its row lock (PostgreSQL) or the write lock (SQLite):
    // concurrent appends queue here instead of forking the chain.
    let row =
        sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash, at")
            .fetch_one(&mut *tx)
            .await?;
    let mut seq: i64 = row.try_get("seq")?;
    let mut prev_hash: String = row.try_get("hash")?;
    let newest_at: String = row.try_get("at")?;
    let at = clock::now();
    if at < newest_at {
        tracing::warn!(%newest_at, clock = %at, "the clock stepped backwards");
        let warning = serde_json::json!({ "newest_event_at": newest_at, "clock_read": at });
        prev_hash = insert_event(
            tx,
            EventFields {
                seq,
                at: &at,
                actor: "system",
                action: AuditAction::ClockSteppedBack.as_str(),
                subject: &AuditSubject::Trail.to_string(),
                details: &warning.to_string(),
                prev_hash: &prev_hash,
            },
        )
        .await?;
        seq += 1;
    }
    let details = details.to_string();
    let subject = subject.to_string();
    let hash = insert_event(
        tx,
        EventFields {
            seq,
            at: &at,
            actor,
            action: action.as_str(),
            subject: &subject,
            details: &details,
            prev_hash: &prev_hash,
        },
    )
    .await?;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, at = $3 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
    Ok(seq)
}

/// Writes one event row; its hash.
async fn insert_event(
    tx: &mut sqlx::AnyConnection,
    event: EventFields<'_>,
) -> Result<String, DbError> {
    let hash = event.hash();
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, subject, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(event.seq)
    .bind(event.at)
    .bind(event.actor)
    .bind(event.action)
    .bind(event.subject)
    .bind(event.details)
    .bind(event.prev_hash)
    .bind(&hash)
    .execute(&mut *tx)
    .await?;
    Ok(hash)
}

pub(super) fn event_from_row(r: &sqlx::any::AnyRow) -> Result<AuditEvent, DbError> {
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
        // The export's filter, with no time range and no upper sequence bound.
        let range = ExportRange {
            actor: filter.actor.trim().to_owned(),
            action: exact.to_owned(),
            action_prefix: prefix.to_owned(),
            subject: filter.subject.trim().to_owned(),
            up_to_seq: i64::MAX,
            ..ExportRange::default()
        };
        let matched = if range.is_contiguous() {
            // The online trail runs without gaps (the tree and `audit verify` see to
            // that): two index lookups instead of counting a million rows.
            // One aggregate a subquery: SQLite answers a lone MIN or MAX from the index
            // but scans the table for both at once.
            let row = sqlx::query(
                "SELECT (SELECT MIN(seq) FROM audit_events) AS first,
                        (SELECT MAX(seq) FROM audit_events) AS last",
            )
            .fetch_one(self.pool())
            .await?;
            let (first, last): (Option<i64>, Option<i64>) =
                (row.try_get("first")?, row.try_get("last")?);
            first.zip(last).map_or(0, |(first, last)| last - first + 1)
        } else {
            self.export_counts(&range).await?.0
        };
        let (filter, limit_at) = range.filter();
        let sql = format!(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
             FROM audit_events WHERE {filter} ORDER BY seq DESC LIMIT ${limit_at}"
        );
        let rows = range
            .bind(sqlx::query(&sql))
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

    /// The events an export covers, in sequence order, read as they are sent (a million
    /// events are never all in memory), and how many there are with the first and last
    /// sequence numbers. Events after `range.up_to_seq` (appended while the export runs)
    /// are not part of it.
    pub async fn export_counts(
        &self,
        range: &ExportRange,
    ) -> Result<(i64, Option<i64>, Option<i64>), DbError> {
        let (filter, _) = range.filter();
        let sql = format!(
            "SELECT COUNT(*) AS n, MIN(seq) AS first, MAX(seq) AS last \
             FROM audit_events WHERE {filter}"
        );
        let row = range.bind(sqlx::query(&sql)).fetch_one(self.pool()).await?;
        Ok((
            row.try_get("n")?,
            row.try_get("first")?,
            row.try_get("last")?,
        ))
    }

    /// The events of `range`, oldest first, as a stream.
    pub fn export_events<'a>(
        &'a self,
        range: &'a ExportRange,
        sql: &'a str,
    ) -> impl futures_util::Stream<Item = Result<AuditEvent, DbError>> + 'a {
        use futures_util::StreamExt;
        range
            .bind(sqlx::query(sql))
            .fetch(self.pool())
            .map(|row| event_from_row(&row?))
    }

    /// Keeps a signed checkpoint of the first `size` events (once per size).
    pub async fn store_checkpoint(&self, size: i64, root: &str, note: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (size, root, note, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING",
        )
        .bind(size)
        .bind(root)
        .bind(note)
        .bind(clock::now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest `limit` stored checkpoints, newest first.
    pub async fn checkpoints(&self, limit: i64) -> Result<Vec<StoredCheckpoint>, DbError> {
        let rows = sqlx::query(
            "SELECT size, root, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }

    /// The stored checkpoint of `size` events.
    pub async fn checkpoint(&self, size: i64) -> Result<Option<StoredCheckpoint>, DbError> {
        sqlx::query("SELECT size, root, note, created_at FROM audit_checkpoints WHERE size = $1")
            .bind(size)
            .fetch_optional(self.pool())
            .await?
            .as_ref()
            .map(checkpoint_from_row)
            .transpose()
    }

    /// The smallest stored checkpoint that covers event `seq` (its tree holds it).
    pub async fn checkpoint_covering(&self, seq: i64) -> Result<Option<StoredCheckpoint>, DbError> {
        sqlx::query(
            "SELECT size, root, note, created_at FROM audit_checkpoints
             WHERE size >= $1 ORDER BY size LIMIT 1",
        )
        .bind(seq)
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(checkpoint_from_row)
        .transpose()
    }

    /// The head: the last sequence number written and its event's hash.
    pub async fn audit_head(&self) -> Result<(i64, String), DbError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        Ok((row.try_get("seq")?, row.try_get("hash")?))
    }

    /// The patches that events between `from` (inclusive) and `to` (exclusive) are about
    /// (empty bounds: open), by id.
    pub async fn patches_with_events_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<i64>, DbError> {
        let subjects: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT subject FROM audit_events
             WHERE substr(subject, 1, 6) = 'patch:' AND ($1 = '' OR at >= $1) AND ($2 = '' OR at < $2)",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let mut ids: Vec<i64> = subjects
            .iter()
            .filter_map(|s| s.strip_prefix("patch:")?.parse().ok())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest sequence number written so far.
    pub async fn audit_head_seq(&self) -> Result<i64, DbError> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM audit_head WHERE id = 1")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Records an event on its own (for actions that change nothing else, like signing in).
    pub async fn record(
        &self,
        actor: &str,
        action: AuditAction,
        subject: &AuditSubject,
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
        self.unexplained_rows_given(&events).await
    }

    /// [`Database::unexplained_rows`] given the trail's events (with those of the archive
    /// segments, which explain older rows).
    pub async fn unexplained_rows_given(
        &self,
        events: &[AuditEvent],
    ) -> Result<Vec<String>, DbError> {
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
        Ok(unexplained_rows(events, &tables))
    }

    /// Walks the online trail (from the last archive segment's last event): the number
    /// of events, or the first broken link.
    pub async fn verify_audit(&self) -> Result<Result<usize, BrokenChain>, DbError> {
        let events = self.audit_events().await?;
        let head = self.audit_head().await?;
        let walk = match self.segments().await?.last() {
            Some(segment) => ChainWalk::after(segment.last_seq, &segment.last_hash),
            None => ChainWalk::default(),
        };
        Ok(verify_chain(walk, &events, (head.0, &head.1)))
    }
}

/// An archive segment: events moved out of the database into a file that verifies on
/// its own (see `service::retention`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its first event.
    pub first_seq: i64,
    /// Its last event.
    pub last_seq: i64,
    /// The last event's hash: the online chain continues from it.
    pub last_hash: String,
    /// The first event's time.
    pub first_at: String,
    /// The last event's time.
    pub last_at: String,
    /// How many events it holds.
    pub events: i64,
    /// The file's name in the archive directory.
    pub file: String,
    /// The file's SHA-256 (hex).
    pub sha256: String,
    /// The file's size.
    pub bytes: i64,
    /// When it was made (RFC 3339 UTC).
    pub created_at: String,
}

impl Database {
    /// The archive segments, oldest first.
    pub async fn segments(&self) -> Result<Vec<Segment>, DbError> {
        let rows = sqlx::query(
            "SELECT first_seq, last_seq, last_hash, first_at, last_at, events, file, sha256,
                    bytes, created_at
             FROM audit_segments ORDER BY first_seq",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Segment {
                    first_seq: r.try_get("first_seq")?,
                    last_seq: r.try_get("last_seq")?,
                    last_hash: r.try_get("last_hash")?,
                    first_at: r.try_get("first_at")?,
                    last_at: r.try_get("last_at")?,
                    events: r.try_get("events")?,
                    file: r.try_get("file")?,
                    sha256: r.try_get("sha256")?,
                    bytes: r.try_get("bytes")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The last event archived, when any was.
    pub async fn archived_through(&self) -> Result<Option<i64>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT MAX(last_seq) FROM audit_segments")
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// The oldest event still in the database.
    pub async fn oldest_online_event(&self) -> Result<Option<AuditEvent>, DbError> {
        sqlx::query(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash
             FROM audit_events WHERE seq = (SELECT MIN(seq) FROM audit_events)",
        )
        .fetch_optional(self.pool())
        .await?
        .as_ref()
        .map(event_from_row)
        .transpose()
    }

    /// The first event recorded at or after `at` (RFC 3339 UTC), by sequence number.
    pub async fn first_event_since(&self, at: &str) -> Result<Option<i64>, DbError> {
        Ok(
            sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE at >= $1")
                .bind(at)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Moves the events of `segment`, already written to its file, out of the database:
    /// records the segment, deletes its events and appends an `audit.archived` event, in
    /// one transaction; the event's sequence number. `None` (nothing changes) unless the
    /// segment starts at the oldest online event and ends at the event it names, so that
    /// two archivers cannot both move the same events.
    pub async fn archive_segment(
        &self,
        segment: &Segment,
        details: &serde_json::Value,
    ) -> Result<Option<i64>, DbError> {
        let mut tx = self.pool().begin().await?;
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seq) FROM audit_events")
            .fetch_one(&mut *tx)
            .await?;
        let last_hash: Option<String> =
            sqlx::query_scalar("SELECT hash FROM audit_events WHERE seq = $1")
                .bind(segment.last_seq)
                .fetch_optional(&mut *tx)
                .await?;
        if oldest != Some(segment.first_seq) || last_hash.as_deref() != Some(&segment.last_hash) {
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO audit_segments (first_seq, last_seq, last_hash, first_at, last_at,
                 events, file, sha256, bytes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(segment.first_seq)
        .bind(segment.last_seq)
        .bind(&segment.last_hash)
        .bind(&segment.first_at)
        .bind(&segment.last_at)
        .bind(segment.events)
        .bind(&segment.file)
        .bind(&segment.sha256)
        .bind(segment.bytes)
        .bind(&segment.created_at)
        .execute(&mut *tx)
        .await?;
        let deleted = sqlx::query("DELETE FROM audit_events WHERE seq >= $1 AND seq <= $2")
            .bind(segment.first_seq)
            .bind(segment.last_seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if i64::try_from(deleted) != Ok(segment.events) {
            return Err(DbError::Corrupt(format!(
                "events #{}..#{} should be {} but {deleted} were found",
                segment.first_seq, segment.last_seq, segment.events
            )));
        }
        let seq = append(
            &mut tx,
            "system",
            AuditAction::AuditArchived,
            &AuditSubject::Trail,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(seq))
    }
}

/// A rotation of the checkpoint key, as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRotation {
    /// The `audit.key_rotated` event: the checkpoint of the trail up to it announces the
    /// new key.
    pub event: AuditEvent,
    /// The verifier key retired.
    pub old_key: String,
    /// The verifier key that signs from then on.
    pub new_key: String,
    /// The rotation statement (old key, new key, size and root of the first `event.seq`
    /// events), signed by both keys.
    pub note: String,
}

impl Database {
    /// Every rotation of the checkpoint key, oldest first.
    pub async fn key_rotations(&self) -> Result<Vec<KeyRotation>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, old_key, new_key, event, note FROM audit_key_rotations ORDER BY seq",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq")?;
                let event: String = r.try_get("event")?;
                Ok(KeyRotation {
                    event: serde_json::from_str(&event).map_err(|e| {
                        DbError::Corrupt(format!("key rotation at event #{seq}: {e}"))
                    })?,
                    old_key: r.try_get("old_key")?,
                    new_key: r.try_get("new_key")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    /// Keeps a rotation of the checkpoint key.
    pub async fn store_key_rotation(&self, rotation: &KeyRotation) -> Result<(), DbError> {
        let event =
            serde_json::to_string(&rotation.event).map_err(|e| DbError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO audit_key_rotations (seq, old_key, new_key, event, note)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(rotation.event.seq)
        .bind(&rotation.old_key)
        .bind(&rotation.new_key)
        .bind(event)
        .bind(&rotation.note)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// A checkpoint as the server keeps it.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    /// Events it commits to.
    pub size: i64,
    /// The tree's root (base64).
    pub root: String,
    /// The signed note.
    pub note: String,
    /// When it was made (RFC 3339 UTC).
    pub created_at: String,
}

fn checkpoint_from_row(r: &sqlx::any::AnyRow) -> Result<StoredCheckpoint, DbError> {
    Ok(StoredCheckpoint {
        size: r.try_get("size")?,
        root: r.try_get("root")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Which events an export covers: the audit page's filters, a time range (RFC 3339 UTC
/// as the trail writes it; `from` inclusive, `to` exclusive) and the last sequence number
/// at the start of the export.
#[derive(Debug, Clone, Default)]
pub struct ExportRange {
    /// Exact actor, or empty.
    pub actor: String,
    /// Exact action, or empty.
    pub action: String,
    /// Action prefix ending in `.`, or empty.
    pub action_prefix: String,
    /// Exact subject, or empty.
    pub subject: String,
    /// Earliest time, or empty.
    pub from: String,
    /// Time before which, or empty.
    pub to: String,
    /// The last sequence number included.
    pub up_to_seq: i64,
}

/// The query of an export's events, oldest first.
pub fn export_events_sql(range: &ExportRange) -> String {
    let (filter, _) = range.filter();
    format!(
        "SELECT seq, at, actor, action, subject, details, prev_hash, hash \
         FROM audit_events WHERE {filter} ORDER BY seq"
    )
}

impl ExportRange {
    /// Whether the range is the online trail from its oldest event with nothing left out
    /// (no filter, no start time; an end time only cuts it short): its events are
    /// consecutive, so an export of it rebuilds the tree itself and needs no inclusion
    /// proofs.
    pub fn is_contiguous(&self) -> bool {
        [
            &self.actor,
            &self.action,
            &self.action_prefix,
            &self.subject,
            &self.from,
        ]
        .iter()
        .all(|field| field.is_empty())
    }

    /// Whether `event` is in the range (as the query selects; for events read from
    /// archive segments).
    pub fn matches(&self, event: &AuditEvent) -> bool {
        (self.actor.is_empty() || event.actor == self.actor)
            && (self.action.is_empty() || event.action == self.action)
            && event.action.starts_with(&self.action_prefix)
            && (self.subject.is_empty() || event.subject == self.subject)
            && (self.from.is_empty() || event.at >= self.from)
            && (self.to.is_empty() || event.at < self.to)
            && event.seq <= self.up_to_seq
    }

    /// The conditions the range has, each with its value: only those go into the query,
    /// so that an index serves an exact actor, action or subject (`$1 = '' OR ...` would
    /// make every search read the whole trail).
    fn conditions(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("actor = {}", self.actor.as_str()),
            ("action = {}", self.action.as_str()),
            (
                "substr(action, 1, length({})) = {}",
                self.action_prefix.as_str(),
            ),
            ("subject = {}", self.subject.as_str()),
            ("at >= {}", self.from.as_str()),
            ("at < {}", self.to.as_str()),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
    }

    /// The WHERE clause selecting the range's events, for [`ExportRange::bind`]'s values,
    /// and the number of the next free placeholder.
    fn filter(&self) -> (String, usize) {
        let mut clauses = Vec::new();
        for (n, (template, _)) in self.conditions().enumerate() {
            clauses.push(template.replace("{}", &format!("${}", n + 1)));
        }
        clauses.push(format!("seq <= ${}", clauses.len() + 1));
        let next = clauses.len() + 1;
        (clauses.join(" AND "), next)
    }

    fn bind<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        for (_, value) in self.conditions() {
            query = query.bind(value);
        }
        query.bind(self.up_to_seq)
    }
}
