//! Exporting the audit trail for a period and filters, for auditors: JSON Lines (what
//! verifies: every field of every event, the sequence numbers and both hashes) or CSV (for
//! reading, formula injection neutralised), each opened by a header that says what the
//! export holds. Events stream from the database to the client; the export itself is an
//! audit event (PCI DSS 10.2.1.3: access to the audit logs).

use super::checkpoints::{self, CheckpointError};
use super::tree::{self, StoredTree};
use crate::clock;
use crate::store::audit::{export_events_sql, ExportRange};
use crate::store::{Database, DbError};
use futures_util::StreamExt;
use graftbench_domain::audit::{neutralised_csv_cell, AuditAction, AuditEvent, AuditSubject};
use serde::Serialize;
use std::path::Path;
use tokio::sync::mpsc;

/// The two forms of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object a line: the header, then each event.
    JsonLines,
    /// `#` lines with the header, then a header row and one row an event.
    Csv,
}

impl ExportFormat {
    /// `jsonl` or `csv`.
    pub fn parse(name: &str) -> Option<ExportFormat> {
        match name {
            "jsonl" | "json-lines" => Some(ExportFormat::JsonLines),
            "csv" => Some(ExportFormat::Csv),
            _ => None,
        }
    }

    /// The media type it is served as.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "application/jsonl; charset=utf-8",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }

    /// The file name suffix.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::JsonLines => "jsonl",
            ExportFormat::Csv => "csv",
        }
    }
}

/// What an export holds, written before its events: enough for an auditor to show the
/// population is complete (source, filters, extraction time, first and last sequence,
/// count).
#[derive(Debug, Clone, Serialize)]
pub struct ExportHeader {
    /// Always `graftbench-audit-export/1`.
    pub format: &'static str,
    /// The instance's name for itself (its public URL or `graftbench`).
    pub source: String,
    /// Who exported it.
    pub exported_by: String,
    /// When (RFC 3339 UTC).
    pub extracted_at: String,
    /// The filters and time range, as given.
    pub filters: serde_json::Value,
    /// The last event in the trail when the export began: later ones are not in it.
    pub trail_head_seq: i64,
    /// The first and last sequence numbers exported (`null` when none matched).
    pub first_seq: Option<i64>,
    /// See `first_seq`.
    pub last_seq: Option<i64>,
    /// How many events follow.
    pub events: i64,
    /// The smallest stored signed checkpoint whose tree holds the last event exported (its
    /// signed note; one is signed for the export when none was), or `null` when this
    /// instance has no checkpoint key.
    pub checkpoint: Option<String>,
    /// The last event moved into an archive segment (`DATA_DIR/audit-archive`), when
    /// any were: events up to it are not online and not in this export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_through: Option<i64>,
    /// Whether each event carries its inclusion proof into that checkpoint (JSON Lines
    /// exports of filtered events).
    pub inclusion_proofs: bool,
    /// For an export of consecutive events that does not start at event 1: the roots of
    /// the complete subtrees of the tree of the events before its first (largest first),
    /// from which its own events rebuild the checkpoint's tree.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<String>,
    /// For an export of consecutive events that ends before the checkpoint does: the
    /// consistency proof from the tree up to its last event to the checkpoint's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consistency_proof: Vec<String>,
    /// Every rotation of the checkpoint key, oldest first: the rotation statement (signed
    /// by the old key and the new), the `audit.key_rotated` event and its inclusion proof;
    /// a verifier who pinned an older key follows them forwards to the one that signed
    /// `checkpoint`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_announcements: Vec<serde_json::Value>,
}

impl ExportHeader {
    /// The header of `counted` events (how many, the first and last sequence numbers) as
    /// `exported_by` selected them with `filters`, from a trail whose last event was
    /// `trail_head_seq`; [`tie_to_checkpoint`] fills in the rest.
    pub fn new(
        source: &str,
        exported_by: &str,
        filters: serde_json::Value,
        trail_head_seq: i64,
        counted: (i64, Option<i64>, Option<i64>),
    ) -> ExportHeader {
        ExportHeader {
            format: "graftbench-audit-export/1",
            source: source.to_owned(),
            exported_by: exported_by.to_owned(),
            extracted_at: clock::now(),
            filters,
            trail_head_seq,
            first_seq: counted.1,
            last_seq: counted.2,
            events: counted.0,
            archived_through: None,
            checkpoint: None,
            inclusion_proofs: false,
            frontier: Vec::new(),
            consistency_proof: Vec::new(),
            key_announcements: Vec::new(),
        }
    }
}

/// The events an export covers, from what a person typed: exact actor and subject, an
/// action or a prefix of actions ending in `.`, and times (`2026-11-27` or RFC 3339).
/// Empty values select everything. `Err` names the time that is not one.
pub fn range(
    actor: &str,
    action: &str,
    subject: &str,
    from: &str,
    to: &str,
) -> Result<ExportRange, String> {
    let bound = |text: &str| match text.trim() {
        "" => Ok(String::new()),
        text => clock::parse_bound(text),
    };
    let action = action.trim();
    let (action, action_prefix) = if action.ends_with('.') {
        ("", action)
    } else {
        (action, "")
    };
    Ok(ExportRange {
        actor: actor.trim().to_owned(),
        action: action.to_owned(),
        action_prefix: action_prefix.to_owned(),
        subject: subject.trim().to_owned(),
        from: bound(from)?,
        to: bound(to)?,
        up_to_seq: 0,
    })
}

/// A chunk of an export as it is sent.
pub type Chunk = Result<Vec<u8>, CheckpointError>;

/// Events read and proved at a time.
const BATCH: usize = 1024;

/// Starts an export of `range` for `actor`: records the export in the trail, finds the
/// smallest stored checkpoint covering what it exports (or signs one with the instance's
/// key in `data_dir`, when there is a key), then sends the header and every event through
/// the returned channel as they are read. A JSON Lines export carries what ties its
/// events to that checkpoint ([`tie_to_checkpoint`]), so that it verifies offline on its
/// own. The caller streams the chunks to a client or a file; the
/// channel's bound keeps memory flat.
pub async fn export(
    db: &Database,
    data_dir: &Path,
    source: &str,
    actor: &str,
    mut range: ExportRange,
    format: ExportFormat,
) -> Result<mpsc::Receiver<Chunk>, CheckpointError> {
    range.up_to_seq = db.audit_head_seq().await?;
    let (events, first_seq, last_seq) = db.export_counts(&range).await?;
    let filters = serde_json::json!({
        "actor": range.actor,
        "action": if range.action_prefix.is_empty() { &range.action } else { &range.action_prefix },
        "subject": range.subject,
        "from": range.from,
        "to": range.to,
    });
    db.record(
        actor,
        AuditAction::AuditExported,
        &AuditSubject::Trail,
        &serde_json::json!({
            "format": format.extension(),
            "filters": filters,
            "events": events,
            "first_seq": first_seq,
            "last_seq": last_seq,
        }),
    )
    .await?;
    let header = ExportHeader::new(
        source,
        actor,
        filters,
        range.up_to_seq,
        (events, first_seq, last_seq),
    );
    let (header, proofs_into) = tie_to_checkpoint(db, data_dir, header, &range, format).await?;
    Ok(start(db, header, range, format, proofs_into))
}

/// Fills in what ties the export's events to a signed checkpoint: the smallest stored
/// one covering the last event (or one signed now), and per-event inclusion proofs
/// where the export cannot rebuild the tree itself; otherwise (the online trail from its
/// oldest event, filtered by nothing but an end time) the frontier of the tree before
/// its first event and, when it ends before the checkpoint, the consistency proof to it.
/// Returns the header and the tree size the events are proved into, if they are.
pub(crate) async fn tie_to_checkpoint(
    db: &Database,
    data_dir: &Path,
    mut header: ExportHeader,
    range: &ExportRange,
    format: ExportFormat,
) -> Result<(ExportHeader, Option<u64>), CheckpointError> {
    header.archived_through = db.archived_through().await?;
    let (Some(first), Some(last)) = (header.first_seq, header.last_seq) else {
        return Ok((header, None));
    };
    let Some((size, note)) = covering_checkpoint(db, data_dir, last).await? else {
        return Ok((header, None));
    };
    header.checkpoint = Some(note);
    // All of them: the checkpoint is the current key's, whichever older key was pinned.
    header.key_announcements = tree::announcements(db)
        .await?
        .iter()
        .map(checkpoints::Announcement::to_json)
        .collect();
    // Consecutive only when nothing was left out: an end time after a clock that stepped
    // back can select events with gaps between them.
    let consecutive =
        range.is_contiguous() && Some(header.events) == last.checked_sub(first).map(|d| d + 1);
    if !consecutive {
        let proofs_into = (format == ExportFormat::JsonLines).then_some(size);
        header.inclusion_proofs = proofs_into.is_some();
        return Ok((header, proofs_into));
    }
    let (first, last) = (
        u64::try_from(first).unwrap_or(0),
        u64::try_from(last).unwrap_or(0),
    );
    let mut tree = StoredTree::new(db);
    header.frontier = tree
        .frontier(first.saturating_sub(1))
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    if last < size {
        header.consistency_proof = tree
            .consistency_proof(last, size)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    Ok((header, None))
}

/// Sends `header` and the events of `range` through the returned channel as they are
/// read, with their inclusion proofs into the tree of `proofs_into` events when given.
pub(crate) fn start(
    db: &Database,
    header: ExportHeader,
    range: ExportRange,
    format: ExportFormat,
    proofs_into: Option<u64>,
) -> mpsc::Receiver<Chunk> {
    let (sender, receiver) = mpsc::channel(16);
    let db = db.clone();
    tokio::spawn(async move {
        let first = match format {
            ExportFormat::JsonLines => json_line(&serde_json::json!({ "header": header })),
            ExportFormat::Csv => csv_preamble(&header),
        };
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        if let Err(e) = stream_events(&db, &range, format, proofs_into, &sender).await {
            let _ = sender.send(Err(e)).await;
        }
    });
    receiver
}

/// The smallest stored checkpoint that covers event `last` (size and signed note) signed
/// by the key in use, or a new one signed now; `None` when there is none and this
/// instance has no key.
async fn covering_checkpoint(
    db: &Database,
    data_dir: &Path,
    last: i64,
) -> Result<Option<(u64, String)>, CheckpointError> {
    // One signed by the key in use: a verifier who pinned the newest key then needs no
    // other (rotations are followed forwards only).
    let current = checkpoints::load_key(data_dir)?.map(|(_, vkey)| vkey);
    if let Some(stored) = db.checkpoint_covering(last).await? {
        let by_current = current
            .as_deref()
            .is_none_or(|vkey| checkpoints::open(stored.note.as_bytes(), vkey).is_ok());
        if by_current {
            let size = u64::try_from(stored.size)
                .map_err(|_| DbError::Corrupt(format!("checkpoint of {} events", stored.size)))?;
            return Ok(Some((size, stored.note)));
        }
    }
    match tree::sign_checkpoint(db, data_dir).await {
        Ok(made) => Ok(Some((made.size, made.note))),
        Err(CheckpointError::NoKey(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends the events of `range`, in chunks of about 60 KiB, with their inclusion proofs
/// into the tree of `proofs_into` events when given. Stops quietly when the receiver
/// went away.
async fn stream_events(
    db: &Database,
    range: &ExportRange,
    format: ExportFormat,
    proofs_into: Option<u64>,
    sender: &mpsc::Sender<Chunk>,
) -> Result<(), CheckpointError> {
    let sql = export_events_sql(range);
    let mut rows = std::pin::pin!(db.export_events(range, &sql).chunks(BATCH));
    let mut tree = StoredTree::new(db);
    let mut out = Vec::with_capacity(64 << 10);
    while let Some(batch) = rows.next().await {
        let batch: Vec<AuditEvent> = batch.into_iter().collect::<Result<_, _>>()?;
        let proofs = match proofs_into {
            Some(size) => {
                let seqs: Vec<u64> = batch
                    .iter()
                    .map(|e| u64::try_from(e.seq).unwrap_or(0))
                    .collect();
                tree.inclusion_proofs(&seqs, size).await?
            }
            None => Vec::new(),
        };
        let mut proofs = proofs.into_iter();
        for event in &batch {
            match format {
                ExportFormat::JsonLines => {
                    let mut line = event_json(event);
                    if let Some(proof) = proofs.next() {
                        line["proof"] = proof.iter().map(ToString::to_string).collect();
                    }
                    out.extend(json_line(&line));
                }
                ExportFormat::Csv => out.extend(csv_row(event)),
            }
            if out.len() >= 60 << 10 {
                let full = std::mem::replace(&mut out, Vec::with_capacity(64 << 10));
                if sender.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
    if !out.is_empty() {
        let _ = sender.send(Ok(out)).await;
    }
    Ok(())
}

fn json_line(value: &serde_json::Value) -> Vec<u8> {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    line
}

/// An event as a JSON Lines record: every stored field, `details` as the JSON it is.
fn event_json(event: &AuditEvent) -> serde_json::Value {
    serde_json::json!({
        "seq": event.seq,
        "at": event.at,
        "actor": event.actor,
        "action": event.action,
        "subject": event.subject,
        // The exact stored text: the hash covers it byte for byte.
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    })
}

const CSV_COLUMNS: [&str; 8] = [
    "seq",
    "at",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
];

fn csv_record(cells: &[&str]) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let neutralised: Vec<std::borrow::Cow<'_, str>> =
        cells.iter().map(|c| neutralised_csv_cell(c)).collect();
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(neutralised.iter().map(|c| c.as_ref()));
    writer.into_inner().unwrap_or_default()
}

/// The header as `#` comment lines (what the export holds), then the column names.
fn csv_preamble(header: &ExportHeader) -> Vec<u8> {
    let mut out = Vec::new();
    let value = serde_json::to_value(header).unwrap_or_default();
    if let Some(fields) = value.as_object() {
        for (key, value) in fields {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.extend(csv_record(&[&format!("# {key}"), &text]));
        }
    }
    out.extend(csv_record(&CSV_COLUMNS));
    out
}

fn csv_row(event: &AuditEvent) -> Vec<u8> {
    let seq = event.seq.to_string();
    csv_record(&[
        &seq,
        &event.at,
        &event.actor,
        &event.action,
        &event.subject,
        &event.details,
        &event.prev_hash,
        &event.hash,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_row_quotes_and_neutralises_what_a_spreadsheet_would_run() {
        let event = AuditEvent {
            seq: 7,
            at: "2026-12-01T00:00:00.000Z".into(),
            actor: "=HYPERLINK(\"http://x\",\"y\")".into(),
            action: "user.created".into(),
            subject: "-2+3".into(),
            details: r#"{"a":"b,c"}"#.into(),
            prev_hash: "00".into(),
            hash: "11".into(),
        };
        let row = String::from_utf8(csv_row(&event)).unwrap();
        assert_eq!(
            row,
            "7,2026-12-01T00:00:00.000Z,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",user.created,\
             '-2+3,\"{\"\"a\"\":\"\"b,c\"\"}\",00,11\r\n"
        );
    }
}
