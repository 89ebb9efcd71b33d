//! Exporting the audit trail for a period and filters, for auditors: JSON Lines (what
//! verifies: every field of every event, the sequence numbers and both hashes) or CSV (for
//! reading, formula injection neutralised), each opened by a header that says what the
//! export holds. Events stream from the database to the client; the export itself is an
//! audit event (PCI DSS 10.2.1.3: access to the audit logs).

use crate::clock;
use crate::store::audit::{export_events_sql, ExportRange};
use crate::store::{Database, DbError};
use futures_util::StreamExt;
use graftbench_domain::audit::{neutralised_csv_cell, AuditAction, AuditEvent, AuditSubject};
use serde::Serialize;
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
    /// signed note), or `null` when none was made since.
    pub checkpoint: Option<String>,
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
pub type Chunk = Result<Vec<u8>, DbError>;

/// Starts an export of `range` for `actor`: records the export in the trail, then sends
/// the header and every event through the returned channel as they are read. The caller
/// streams the chunks to a client or a file; the channel's bound keeps memory flat.
pub async fn export(
    db: &Database,
    source: &str,
    actor: &str,
    mut range: ExportRange,
    format: ExportFormat,
) -> Result<mpsc::Receiver<Chunk>, DbError> {
    range.up_to_seq = db.audit_head_seq().await?;
    let (events, first_seq, last_seq) = db.export_counts(&range).await?;
    let checkpoint = match last_seq {
        Some(last) => db.checkpoint_covering(last).await?,
        None => None,
    };
    let filters = serde_json::json!({
        "actor": range.actor,
        "action": if range.action_prefix.is_empty() { &range.action } else { &range.action_prefix },
        "subject": range.subject,
        "from": range.from,
        "to": range.to,
    });
    let header = ExportHeader {
        format: "graftbench-audit-export/1",
        source: source.to_owned(),
        exported_by: actor.to_owned(),
        extracted_at: clock::now(),
        filters: filters.clone(),
        trail_head_seq: range.up_to_seq,
        first_seq,
        last_seq,
        events,
        checkpoint,
    };
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
    let (sender, receiver) = mpsc::channel(16);
    let db = db.clone();
    tokio::spawn(async move {
        let sql = export_events_sql();
        let first = match format {
            ExportFormat::JsonLines => json_line(&serde_json::json!({ "header": header })),
            ExportFormat::Csv => csv_preamble(&header),
        };
        if sender.send(Ok(first)).await.is_err() {
            return;
        }
        let mut rows = std::pin::pin!(db.export_events(&range, &sql));
        let mut batch = Vec::with_capacity(64 << 10);
        while let Some(event) = rows.next().await {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    let _ = sender.send(Err(e)).await;
                    return;
                }
            };
            match format {
                ExportFormat::JsonLines => batch.extend(json_line(&event_json(&event))),
                ExportFormat::Csv => batch.extend(csv_row(&event)),
            }
            if batch.len() >= 60 << 10 {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(64 << 10));
                if sender.send(Ok(full)).await.is_err() {
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = sender.send(Ok(batch)).await;
        }
    });
    Ok(receiver)
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
