//! Retention of the audit trail: events older than the policy's `[audit] online_months`
//! move out of the database into an archive segment, a file under
//! `DATA_DIR/audit-archive` in the JSON Lines export format. Nothing is deleted: the file
//! carries a signed checkpoint of exactly the trail up to its last event and the frontier
//! of the Merkle tree before its first, so `graftbench audit verify --bundle FILE`
//! checks it on its own, and the online chain continues from its last event (the tree
//! table keeps every hash, so proofs and checkpoints still cover the whole trail).
//!
//! The file is written, synced and renamed into place before one transaction records the
//! segment, deletes its events and appends an `audit.archived` event: a crash leaves
//! either the events online or the segment recorded, never neither.

use super::checkpoints::{CheckpointError, Tree};
use super::export::{self, ExportFormat, ExportHeader};
use super::tree::{self, StoredTree};
use crate::clock;
use crate::store::audit::{ExportRange, Segment};
use crate::store::{Database, DbError};
use graftbench_domain::audit::{AuditEvent, BrokenChain, ChainWalk};
use graftbench_domain::eligibility::AuditRetention;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use time::{Month, OffsetDateTime};
use tokio::io::AsyncWriteExt;

/// The archive directory's name in the data directory.
pub const ARCHIVE_DIR: &str = "audit-archive";

/// Why archiving stopped (the events stay online).
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The trail's tree or checkpoint could not be made (a broken chain, no key).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The segment's file could not be written.
    #[error("writing the archive segment {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The online trail is not what archiving expects (gaps, or archived meanwhile).
    #[error("archiving refused: {0}")]
    Refused(String),
}

/// A segment just archived.
#[derive(Debug, Clone)]
pub struct Archived {
    /// What the database records of it.
    pub segment: Segment,
    /// Where its file is.
    pub path: PathBuf,
}

/// The time `months` calendar months before `now` (the day clamped to the month's
/// length), as the trail writes times.
pub fn months_before(now: OffsetDateTime, months: u32) -> String {
    let total =
        i64::from(now.year()) * 12 + i64::from(u8::from(now.month()) - 1) - i64::from(months);
    let year = i32::try_from(total.div_euclid(12)).unwrap_or(i32::MIN);
    let month = u8::try_from(total.rem_euclid(12) + 1)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .unwrap_or(Month::January);
    let day = now.day().min(month.length(year));
    let earlier = now
        .replace_day(1)
        .and_then(|at| at.replace_year(year))
        .and_then(|at| at.replace_month(month))
        .and_then(|at| at.replace_day(day))
        .unwrap_or(now);
    clock::format(earlier)
}

/// Where `segment`'s file is in `archive`. The name comes from the database, which the
/// trail does not trust: only a plain file name inside the archive is ever opened.
pub fn segment_path(archive: &Path, segment: &Segment) -> Result<PathBuf, RetentionError> {
    let plain = segment.file.starts_with("segment-")
        && segment.file.ends_with(".jsonl")
        && segment
            .file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !segment.file.contains("..");
    if !plain {
        return Err(RetentionError::Refused(format!(
            "the archive segment of events #{}..#{} names the file {:?}, not a segment file \
             name (the database was changed)",
            segment.first_seq, segment.last_seq, segment.file
        )));
    }
    Ok(archive.join(&segment.file))
}

/// The archive directory of `data_dir`.
pub fn archive_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(ARCHIVE_DIR)
}

/// Moves the online events recorded before `retention`'s cutoff (all of them up to the
/// first recorded at or after it, so that a clock that stepped back never splits the
/// trail out of order) into a new archive segment signed with the instance's key in
/// `data_dir`. The newest event always stays online. `None` when nothing is old enough.
pub async fn archive(
    db: &Database,
    data_dir: &Path,
    retention: &AuditRetention,
    source: &str,
) -> Result<Option<Archived>, RetentionError> {
    let cutoff = months_before(OffsetDateTime::now_utc(), retention.online_months);
    let Some(oldest) = db.oldest_online_event().await? else {
        return Ok(None);
    };
    let head = db.audit_head_seq().await?;
    let keep_from = db
        .first_event_since(&cutoff)
        .await?
        .unwrap_or(head)
        .min(head);
    let last = keep_from - 1;
    if last < oldest.seq {
        return Ok(None);
    }
    // Growing the tree walks the chain over every event to be archived: a broken one
    // stops here, with the events online for `audit verify` to name.
    StoredTree::new(db).grow().await?;
    let size = u64::try_from(last).unwrap_or(0);
    tree::sign_checkpoint_of(db, data_dir, size).await?;
    let range = ExportRange {
        up_to_seq: last,
        ..ExportRange::default()
    };
    let (events, first_seq, last_seq) = db.export_counts(&range).await?;
    if first_seq != Some(oldest.seq) || last_seq != Some(last) || events != last - oldest.seq + 1 {
        return Err(RetentionError::Refused(format!(
            "the online trail from #{} to #{last} is not whole ({events} event(s) found)",
            oldest.seq
        )));
    }
    let header = ExportHeader::new(
        source,
        "system",
        serde_json::json!({ "archive_segment": true, "recorded_before": cutoff }),
        head,
        (events, first_seq, last_seq),
    );
    let format = ExportFormat::JsonLines;
    let (header, _) = export::tie_to_checkpoint(db, data_dir, header, &range, format).await?;
    let dir = archive_dir(data_dir);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RetentionError::Io { path, source }
    };
    // Private like the data directory: the events are the audit trail.
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .await
        .map_err(io(&dir))?;
    // Two archivers racing (replicas run as the owner) each write their own file; the
    // database keeps one segment and the other removes its file.
    let partial = dir.join(format!(
        ".segment-{}-{last}.{}.{}.partial",
        oldest.seq,
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    ));
    let written = write_segment(db, header, range, &partial).await;
    let (sha256, bytes) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    let file = format!(
        "segment-{:012}-{last:012}-{}.jsonl",
        oldest.seq,
        &sha256[..12]
    );
    let path = dir.join(&file);
    tokio::fs::rename(&partial, &path)
        .await
        .map_err(io(&path))?;
    tokio::fs::File::open(&dir)
        .await
        .map_err(io(&dir))?
        .sync_all()
        .await
        .map_err(io(&dir))?;
    let last_event = db
        .events_after(last - 1, 1)
        .await?
        .into_iter()
        .next()
        .filter(|e| e.seq == last)
        .ok_or_else(|| RetentionError::Refused(format!("event #{last} is gone")))?;
    let segment = Segment {
        first_seq: oldest.seq,
        last_seq: last,
        last_hash: last_event.hash,
        first_at: oldest.at,
        last_at: last_event.at,
        events,
        file,
        sha256,
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        created_at: clock::now(),
    };
    let details = serde_json::json!({
        "first_seq": segment.first_seq,
        "last_seq": segment.last_seq,
        "events": segment.events,
        "file": segment.file,
        "sha256": segment.sha256,
        "recorded_before": cutoff,
        "online_months": retention.online_months,
    });
    let recorded = db.archive_segment(&segment, &details).await;
    if !matches!(recorded, Ok(Some(_))) {
        // The file goes only if no segment names it: an error reported after the commit
        // went through, or a racing archiver that wrote the very same bytes, must not cost
        // the only copy of the events.
        let named = db
            .segments()
            .await
            .map(|all| all.iter().any(|s| s.file == segment.file));
        if let Ok(false) = named {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
    match recorded {
        Ok(Some(_)) => Ok(Some(Archived { segment, path })),
        Ok(None) => Err(RetentionError::Refused(format!(
            "events #{}..#{last} were archived meanwhile by another process",
            segment.first_seq
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Writes the segment's export to `path`, synced; its SHA-256 (hex) and size.
async fn write_segment(
    db: &Database,
    header: ExportHeader,
    range: ExportRange,
    path: &Path,
) -> Result<(String, u64), RetentionError> {
    let io = |source| RetentionError::Io {
        path: path.to_owned(),
        source,
    };
    // The chunks are already about 60 KiB: no buffering needed.
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(io)?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut chunks = export::start(db, header, range, ExportFormat::JsonLines, None);
    while let Some(chunk) = chunks.recv().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(io)?;
    }
    out.sync_all().await.map_err(io)?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// The whole trail: the events of every archive segment, then the online ones.
#[derive(Default)]
pub struct WholeTrail {
    /// Every event, by sequence number.
    pub events: Vec<AuditEvent>,
    /// Their tree.
    pub tree: Tree,
    /// How many of them came from archive segments.
    pub archived: u64,
}

/// Reads every archive segment from `archive` (each file must still have the SHA-256
/// the database recorded) and the online events, and walks them as one chain: the
/// whole trail, or the first event that does not fit.
pub async fn whole_trail(
    db: &Database,
    archive: &Path,
) -> Result<Result<WholeTrail, BrokenChain>, RetentionError> {
    let mut trail = WholeTrail::default();
    let mut walk = ChainWalk::default();
    for segment in db.segments().await? {
        let events = read_checked_segment(archive, &segment).await?;
        for event in events {
            if let Err(broken) = walk.step(&event) {
                return Ok(Err(broken));
            }
            trail.tree.push(&event)?;
            trail.events.push(event);
            trail.archived += 1;
        }
        if walk.last() != (segment.last_seq, segment.last_hash.as_str()) {
            return Ok(Err(BrokenChain {
                seq: walk.last().0 + 1,
                why: format!(
                    "archive segment {} ends at #{} but the database says #{}",
                    segment.file,
                    walk.last().0,
                    segment.last_seq
                ),
            }));
        }
    }
    for event in db.audit_events().await? {
        if let Err(broken) = walk.step(&event) {
            return Ok(Err(broken));
        }
        trail.tree.push(&event)?;
        trail.events.push(event);
    }
    let (seq, hash) = db.audit_head().await?;
    if let Err(broken) = walk.ends_at((seq, &hash)) {
        return Ok(Err(broken));
    }
    Ok(Ok(trail))
}

/// The archived events `range` selects, oldest first, read from the segment files in
/// `archive` (each must still have the SHA-256 recorded when it was written). Every
/// segment is read: a clock that stepped back makes segments' time spans overlap.
pub async fn archived_events(
    db: &Database,
    archive: &Path,
    range: &ExportRange,
) -> Result<Vec<AuditEvent>, RetentionError> {
    let mut selected = Vec::new();
    for segment in db.segments().await? {
        let events = read_checked_segment(archive, &segment).await?;
        selected.extend(events.into_iter().filter(|e| range.matches(e)));
    }
    Ok(selected)
}

/// The events of `segment`'s file in `archive`, read off the async workers; refused
/// unless the file still has the SHA-256 recorded when it was written.
async fn read_checked_segment(
    archive: &Path,
    segment: &Segment,
) -> Result<Vec<AuditEvent>, RetentionError> {
    let path = segment_path(archive, segment)?;
    let reading = path.clone();
    let read = tokio::task::spawn_blocking(move || read_segment(&reading))
        .await
        .map_err(|e| RetentionError::Refused(e.to_string()))?
        .map_err(|source| RetentionError::Io {
            path: path.clone(),
            source,
        })?;
    if read.sha256 != segment.sha256 {
        return Err(RetentionError::Refused(format!(
            "{} does not have the SHA-256 recorded when events #{}..#{} were archived in it: \
             it was changed (check it with `graftbench audit verify --bundle`)",
            path.display(),
            segment.first_seq,
            segment.last_seq
        )));
    }
    Ok(read.events)
}

/// A segment file's events and SHA-256.
struct SegmentEvents {
    events: Vec<AuditEvent>,
    sha256: String,
}

fn read_segment(path: &Path) -> std::io::Result<SegmentEvents> {
    use std::io::BufRead;
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    let bytes = std::fs::read(path)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let mut events = Vec::new();
    // The first line is the header.
    for (number, line) in bytes.lines().enumerate().skip(1) {
        let line = line?;
        let event: AuditEvent = serde_json::from_str(&line)
            .map_err(|e| bad(format!("line {}: not an event ({e})", number + 1)))?;
        events.push(event);
    }
    Ok(SegmentEvents { events, sha256 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_cutoff_counts_calendar_months() {
        let at = |now, months| months_before(now, months);
        assert_eq!(
            at(datetime!(2026-12-01 10:00:00 UTC), 12),
            "2025-12-01T10:00:00.000Z"
        );
        assert_eq!(
            at(datetime!(2026-03-31 00:00:00 UTC), 1),
            "2026-02-28T00:00:00.000Z"
        );
        assert_eq!(
            at(datetime!(2028-05-31 23:59:59 UTC), 3),
            "2028-02-29T23:59:59.000Z"
        );
        assert_eq!(
            at(datetime!(2026-01-15 00:00:00 UTC), 13),
            "2024-12-15T00:00:00.000Z"
        );
    }
}
