//! Checking evidence with no database and no network: an evidence bundle (every byte of
//! it) or a JSON Lines export (every event), against a checkpoint signed by a pinned key.
//! Each check that passes is said; each that fails says what it broke.

use super::archive::{self, Member, MANIFEST, SEAL};
use super::{Manifest, Seal, ANNOUNCEMENTS_FILE, CHECKPOINT_FILE, EVENTS_FILE};
use crate::service::checkpoints::{Announcement, Tree, TrustedKeys};
use graftbench_domain::audit::AuditEvent;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tlog_tiles::{check_record, check_tree, record_hash, Checkpoint, Hash};

/// The longest line or small member read into memory.
const LIMIT: u64 = 16 << 20;

/// What was checked, and what failed.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Checks that passed, in order.
    pub checked: Vec<String>,
    /// Checks that failed, each naming what it broke.
    pub problems: Vec<String>,
}

impl Outcome {
    fn ok(&mut self, what: impl Into<String>) {
        self.checked.push(what.into());
    }

    fn bad(&mut self, what: impl Into<String>) {
        self.problems.push(what.into());
    }

    /// Whether everything checked out.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The file could not be read, or is neither kind of evidence.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Not a bundle and not a JSON Lines export.
    #[error("{}: {why}", .path.display())]
    NotEvidence {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// An event line: the event's fields, and its inclusion proof when the line has one.
#[derive(serde::Deserialize)]
struct EventLine {
    #[serde(flatten)]
    event: AuditEvent,
    #[serde(default)]
    proof: Vec<String>,
}

/// Checks the bundle or export at `path`; checkpoints must carry `vkey`'s signature.
pub fn verify(path: &Path, vkey: &str) -> Result<Outcome, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut start = Vec::with_capacity(512);
    File::open(path)
        .map_err(io)?
        .take(512)
        .read_to_end(&mut start)
        .map_err(io)?;
    if start.len() == 512 && &start[257..262] == b"ustar" {
        verify_bundle(path, vkey).map_err(io)
    } else if start.first() == Some(&b'{') {
        verify_export(path, vkey).map_err(io)
    } else {
        Err(VerifyError::NotEvidence {
            path: path.to_owned(),
            why: "neither an evidence bundle (a tar archive) nor a JSON Lines export; CSV \
                  exports are for reading and do not verify"
                .into(),
        })
    }
}

fn parse_hashes(proof: &[String]) -> Option<Vec<Hash>> {
    proof.iter().map(|h| Hash::parse_hash(h).ok()).collect()
}

/// The event's own hash, and its inclusion in `tree` (size and root) when given.
fn check_event(line: &EventLine, tree: Option<(u64, Hash)>) -> Result<bool, String> {
    let event = &line.event;
    if event.fields().hash() != event.hash {
        return Err(format!(
            "event #{}: its fields do not match its hash (changed)",
            event.seq
        ));
    }
    let Some((size, root)) = tree else {
        return Ok(false);
    };
    if line.proof.is_empty() {
        return Ok(false);
    }
    let seq = u64::try_from(event.seq).unwrap_or(0);
    let mut leaf = [0u8; 32];
    // A proof has one hash per level: at most 64 (longer ones only cost work).
    let proved = seq >= 1
        && seq <= size
        && line.proof.len() <= 64
        && hex::decode_to_slice(&event.hash, &mut leaf).is_ok()
        && parse_hashes(&line.proof).is_some_and(|proof| {
            check_record(&proof, size, root, seq - 1, record_hash(&leaf)).is_ok()
        });
    if proved {
        Ok(true)
    } else {
        Err(format!(
            "event #{}: its inclusion proof does not lead to the checkpoint's root (the event \
             or the proof was changed)",
            event.seq
        ))
    }
}

/// Reads lines of at most [`LIMIT`] bytes; `None` at the end.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = reader.take(LIMIT).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    let complete = buf.last() == Some(&b'\n') || (n as u64) < LIMIT;
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    Ok(Some(complete))
}

/// The events of a JSON Lines body: each one's hash, links between neighbours, proofs
/// against `tree`, and the tree they extend from `start` (the tree of the events before
/// the first, known by its frontier; empty from event 1) while they run consecutively.
struct EventWalk {
    count: u64,
    proved: u64,
    first: Option<i64>,
    last: Option<(i64, String)>,
    /// The tree of the events, while they run consecutively on from the start's.
    contiguous: Option<Tree>,
}

fn walk_events(
    reader: &mut impl BufRead,
    tree: Option<(u64, Hash)>,
    start: Tree,
    what: &str,
    outcome: &mut Outcome,
) -> std::io::Result<EventWalk> {
    let first_expected = i64::try_from(start.size()).unwrap_or(i64::MAX - 1) + 1;
    let mut walk = EventWalk {
        count: 0,
        proved: 0,
        first: None,
        last: None,
        contiguous: Some(start),
    };
    let mut buf = Vec::new();
    let mut line_number = 0;
    let mut broken = 0;
    while let Some(complete) = next_line(reader, &mut buf)? {
        line_number += 1;
        if !complete {
            outcome.bad(format!(
                "{what} line {line_number}: longer than {LIMIT} bytes"
            ));
            break;
        }
        let line: EventLine = match serde_json::from_slice(&buf) {
            Ok(line) => line,
            Err(e) => {
                outcome.bad(format!("{what} line {line_number}: not an event ({e})"));
                broken += 1;
                continue;
            }
        };
        walk.count += 1;
        match check_event(&line, tree) {
            Ok(true) => walk.proved += 1,
            Ok(false) => {}
            Err(why) => {
                outcome.bad(format!("{what} line {line_number}: {why}"));
                broken += 1;
            }
        }
        let event = line.event;
        if let Some((seq, hash)) = &walk.last {
            if event.seq == seq.saturating_add(1) && event.prev_hash != *hash {
                outcome.bad(format!(
                    "{what} line {line_number}: event #{} does not link to event #{seq} before \
                     it",
                    event.seq
                ));
            }
            if event.seq <= *seq {
                outcome.bad(format!(
                    "{what} line {line_number}: event #{} after #{seq} (out of order)",
                    event.seq
                ));
            }
        }
        walk.first.get_or_insert(event.seq);
        let expected = walk
            .last
            .as_ref()
            .map_or(first_expected, |(seq, _)| seq.saturating_add(1));
        match walk.contiguous.as_mut() {
            Some(tree) if event.seq == expected => {
                if tree.push(&event).is_err() {
                    walk.contiguous = None;
                }
            }
            _ => walk.contiguous = None,
        }
        walk.last = Some((event.seq, event.hash));
    }
    if broken == 0 && walk.count > 0 {
        outcome.ok(format!(
            "{what}: {} event(s), each one's fields match its hash",
            walk.count
        ));
    }
    Ok(walk)
}

/// The tree named by a signed checkpoint, or a problem.
fn open_checkpoint(
    note: &[u8],
    keys: &TrustedKeys,
    what: &str,
    outcome: &mut Outcome,
) -> Option<Checkpoint> {
    match keys.open(note) {
        Ok(checkpoint) => {
            outcome.ok(format!(
                "{what}: signed by the pinned key (or one it announced), {} event(s), root {}",
                checkpoint.size(),
                checkpoint.hash()
            ));
            Some(checkpoint)
        }
        Err(e) => {
            outcome.bad(format!("{what}: {e}"));
            None
        }
    }
}

/// The tree an export's events extend: of the events before its first, from the
/// header's frontier (an archive segment, or the online trail after one); empty when it
/// names none.
fn export_start(header: &serde_json::Value, checkpoint_size: u64) -> Result<Tree, String> {
    let Some(frontier) = header.get("frontier") else {
        return Ok(Tree::default());
    };
    let hashes = serde_json::from_value::<Vec<String>>(frontier.clone())
        .ok()
        .and_then(|p| parse_hashes(&p))
        .ok_or("not a list of base64 hashes")?;
    let before = header
        .get("first_seq")
        .and_then(|v| v.as_u64())
        .and_then(|first| first.checked_sub(1))
        .ok_or("no first sequence number to start after")?;
    // A frontier alone rebuilds the roots of trees no larger than itself: the checkpoint
    // must commit to exported events, not only to hashes the header supplies.
    if before >= checkpoint_size {
        return Err(format!(
            "the {before} event(s) before the first are not fewer than the checkpoint's \
             {checkpoint_size}: the checkpoint commits to none of the exported events"
        ));
    }
    Tree::after(before, &hashes).map_err(|e| e.to_string())
}

/// Follows key announcements (a list of [`Announcement::to_json`]) from the keys
/// trusted.
fn follow_rotations(
    list: Option<&serde_json::Value>,
    keys: &mut TrustedKeys,
    outcome: &mut Outcome,
) {
    let Some(list) = list else {
        return;
    };
    let parsed = Announcement::list_from_json(list);
    let Some(announcements) = parsed else {
        outcome.bad("the key announcements are not announcements");
        return;
    };
    for result in keys.learn(&announcements) {
        match result {
            Ok(line) => outcome.ok(line),
            Err(line) => outcome.bad(line),
        }
    }
}

fn verify_export(path: &Path, vkey: &str) -> std::io::Result<Outcome> {
    let mut outcome = Outcome::default();
    let mut reader = BufReader::new(File::open(path)?);
    let mut buf = Vec::new();
    let header: serde_json::Value = match next_line(&mut reader, &mut buf)? {
        Some(true) => serde_json::from_slice::<serde_json::Value>(&buf)
            .ok()
            .and_then(|v| v.get("header").cloned())
            .unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    if !header.is_object() {
        outcome.bad("the first line is not the export's header");
        return Ok(outcome);
    }
    let mut keys = TrustedKeys::pinned(vkey);
    follow_rotations(header.get("key_announcements"), &mut keys, &mut outcome);
    let checkpoint = match header.get("checkpoint").and_then(|c| c.as_str()) {
        Some(note) => open_checkpoint(
            note.as_bytes(),
            &keys,
            "the header's checkpoint",
            &mut outcome,
        ),
        None => {
            outcome.bad(
                "the header names no checkpoint: the events cannot be tied to a signed tree \
                 (sign one with `graftbench audit checkpoint` and export again)",
            );
            None
        }
    };
    let tree = checkpoint.as_ref().map(|c| (c.size(), *c.hash()));
    let start = match checkpoint.as_ref().map(|c| export_start(&header, c.size())) {
        Some(Ok(start)) => start,
        Some(Err(why)) => {
            outcome.bad(format!("the header's frontier: {why}"));
            Tree::default()
        }
        None => Tree::default(),
    };
    let walk = walk_events(&mut reader, tree, start, "the export", &mut outcome)?;
    let count = header.get("events").and_then(|v| v.as_u64());
    if count != Some(walk.count) {
        outcome.bad(format!(
            "the header says {} event(s) but {} follow (events were added or removed)",
            count.map_or("no count of".to_owned(), |c| c.to_string()),
            walk.count
        ));
    }
    let (first, last) = (
        header.get("first_seq").and_then(|v| v.as_i64()),
        header.get("last_seq").and_then(|v| v.as_i64()),
    );
    if first != walk.first || last != walk.last.as_ref().map(|(s, _)| *s) {
        outcome.bad("the header's first and last sequence numbers are not the events'");
    }
    if let Some(checkpoint) = &checkpoint {
        let size = checkpoint.size();
        if walk.proved == walk.count && walk.count > 0 {
            outcome.ok(format!(
                "every event is in the checkpoint's tree of {size} event(s) (inclusion proofs)"
            ));
        } else if let Some(tree) = walk.contiguous.as_ref().filter(|_| walk.count > 0) {
            // Consecutive events from event 1, or from the header's frontier of the tree
            // before them: they rebuild the checkpoint's tree, or (ending before it does)
            // a tree the header's consistency proof ties to it.
            let before = tree.size() - walk.count;
            let n = tree.size().min(size);
            let span = if before == 0 {
                format!("the export's first {n} event(s)")
            } else {
                format!(
                    "the export's events #{}..#{n}, on the header's frontier of the {before} \
                     before them,",
                    before + 1
                )
            };
            if tree.size() > size {
                // The checkpoint says nothing of events after its last.
                outcome.bad(format!(
                    "events #{}..#{} come after the checkpoint's {size}: nothing ties them to it",
                    size + 1,
                    tree.size()
                ));
            } else if tree.size() == size {
                match tree.root(size) {
                    Ok(root) if root == *checkpoint.hash() => {
                        outcome.ok(format!("{span} are the ones the checkpoint commits to"))
                    }
                    _ => outcome.bad(format!(
                        "{span} are not the ones the checkpoint commits to (rewritten)"
                    )),
                }
            } else {
                let proof = header
                    .get("consistency_proof")
                    .and_then(|p| serde_json::from_value::<Vec<String>>(p.clone()).ok())
                    .and_then(|p| parse_hashes(&p));
                let consistent = match (tree.root(n), proof) {
                    (Ok(root), Some(proof)) => {
                        check_tree(&proof, size, *checkpoint.hash(), n, root).is_ok()
                    }
                    _ => false,
                };
                if consistent {
                    outcome.ok(format!(
                        "{span} are the first {n} of the checkpoint's tree of {size} \
                         (consistency proof)"
                    ));
                } else {
                    outcome.bad(format!(
                        "{span} are not the first {n} of the checkpoint's tree of {size} (the \
                         events or the header's consistency proof were changed)"
                    ));
                }
            }
        } else if walk.count > 0 {
            outcome.bad(format!(
                "{} event(s) have no inclusion proof and the export is not the trail from its \
                 first event: they cannot be tied to the checkpoint",
                walk.count - walk.proved
            ));
        }
    }
    outcome.ok(
        "not signed: the header's source, extraction time and filters (an evidence bundle \
         seals those)",
    );
    Ok(outcome)
}

/// Reads a small member whole (at most [`LIMIT`] bytes).
fn read_small(entry: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    entry.take(LIMIT).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn verify_bundle(path: &Path, vkey: &str) -> std::io::Result<Outcome> {
    let mut keys = TrustedKeys::pinned(vkey);
    let mut outcome = Outcome::default();
    let mut archive = tar::Archive::new(BufReader::new(File::open(path)?));
    let mut members: Vec<Member> = Vec::new();
    let mut manifest = None;
    let mut seal: Option<(u64, Vec<u8>)> = None;
    let mut base: Option<Checkpoint> = None;
    let mut events: Option<EventWalk> = None;
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => {
            outcome.bad(format!("not a readable archive: {e}"));
            return Ok(outcome);
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                outcome.bad(format!("the archive is damaged: {e}"));
                break;
            }
        };
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if seal.is_some() {
            outcome.bad(format!("{name} follows the seal (added)"));
        }
        let size = entry.size();
        let position = entry.raw_header_position();
        if name == SEAL {
            seal = Some((position, read_small(&mut entry)?));
            continue;
        }
        let mut hashing = archive::HashingReader::new(&mut entry);
        if name == MANIFEST {
            manifest = Some(read_small(&mut hashing)?);
        } else if name == ANNOUNCEMENTS_FILE {
            let list = serde_json::from_slice(&read_small(&mut hashing)?).unwrap_or_default();
            follow_rotations(Some(&list), &mut keys, &mut outcome);
        } else if name == CHECKPOINT_FILE {
            let note = read_small(&mut hashing)?;
            base = open_checkpoint(&note, &keys, CHECKPOINT_FILE, &mut outcome);
        } else if name == EVENTS_FILE {
            let tree = base.as_ref().map(|c| (c.size(), *c.hash()));
            let mut reader = BufReader::new(&mut hashing);
            events = Some(walk_events(
                &mut reader,
                tree,
                Tree::default(),
                EVENTS_FILE,
                &mut outcome,
            )?);
        } else {
            std::io::copy(&mut hashing, &mut std::io::sink())?;
        }
        if name != MANIFEST {
            members.push(Member {
                path: name,
                size,
                sha256: hashing.sha256(),
            });
        }
    }

    // The manifest: every member it lists, with its hash, and nothing else.
    let manifest: Option<Manifest> = manifest.and_then(|m| serde_json::from_slice(&m).ok());
    match &manifest {
        None => outcome.bad("manifest.json is missing or not a manifest"),
        Some(manifest) => {
            let mut all_match = true;
            for listed in &manifest.members {
                match members.iter().find(|m| m.path == listed.path) {
                    Some(found) if found == listed => {}
                    Some(_) => {
                        all_match = false;
                        outcome.bad(format!(
                            "{}: its content is not what the manifest lists (changed)",
                            listed.path
                        ));
                    }
                    None => {
                        all_match = false;
                        outcome.bad(format!(
                            "{}: listed in the manifest but missing",
                            listed.path
                        ));
                    }
                }
            }
            for found in &members {
                if !manifest.members.iter().any(|m| m.path == found.path) {
                    all_match = false;
                    outcome.bad(format!("{}: not in the manifest (added)", found.path));
                }
            }
            if all_match {
                outcome.ok(format!(
                    "{} member(s) match the manifest's SHA-256 sums",
                    manifest.members.len()
                ));
            }
        }
    }
    if let Some(events) = &events {
        if base.is_some() && events.proved == events.count {
            outcome.ok(format!(
                "{EVENTS_FILE}: every event is in the tree of {CHECKPOINT_FILE} (inclusion proofs)"
            ));
        } else if base.is_some() {
            outcome.bad(format!(
                "{EVENTS_FILE}: {} event(s) without an inclusion proof",
                events.count - events.proved
            ));
        }
    } else {
        outcome.bad(format!("{EVENTS_FILE} is missing"));
    }

    // The seal: the audit event that names the hash of every byte before it, in a
    // checkpoint signed by the pinned key, and the exact bytes that end the archive.
    let Some((position, seal_bytes)) = seal else {
        outcome.bad("seal.json is missing: nothing ties the bundle to the trail");
        return Ok(outcome);
    };
    let parsed: Option<Seal> = serde_json::from_slice(&seal_bytes).ok();
    let canonical = serde_json::from_slice::<serde_json::Value>(&seal_bytes)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok());
    if canonical.as_deref() != Some(seal_bytes.as_slice()) {
        outcome.bad("seal.json is not in its canonical form (changed)");
    }
    let mut file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut before = Sha256::new();
    std::io::copy(&mut (&mut file).take(position), &mut HashSink(&mut before))?;
    let mut tail = Vec::new();
    (&mut file).take(LIMIT * 2).read_to_end(&mut tail)?;
    if position + tail.len() as u64 != total || archive::expected_tail(&seal_bytes)? != tail {
        outcome.bad("the bytes after the seal's header are not the seal and the archive's end (changed or added)");
    }
    let Some(seal) = parsed else {
        outcome.bad("seal.json is not a seal");
        return Ok(outcome);
    };
    let sealed: serde_json::Value = serde_json::from_str(&seal.event.details).unwrap_or_default();
    let archive_sha256 = hex::encode(before.finalize());
    if sealed.get("archive_sha256").and_then(|v| v.as_str()) == Some(archive_sha256.as_str()) {
        outcome.ok(format!(
            "the {position} bytes before the seal are the ones event #{} ({} by {} at {}) sealed",
            seal.event.seq, seal.event.action, seal.event.actor, seal.event.at
        ));
    } else {
        outcome.bad(format!(
            "the archive's bytes before the seal are not the ones event #{} sealed (a member, \
             a header or padding was changed)",
            seal.event.seq
        ));
    }
    let head = open_checkpoint(
        seal.checkpoint.as_bytes(),
        &keys,
        "the seal's checkpoint",
        &mut outcome,
    );
    if let Some(head) = &head {
        let line = EventLine {
            event: seal.event.clone(),
            proof: seal.proof.clone(),
        };
        match check_event(&line, Some((head.size(), *head.hash()))) {
            Ok(true) => outcome.ok(format!(
                "the sealing event #{} is in the seal's checkpoint (inclusion proof)",
                seal.event.seq
            )),
            Ok(false) => outcome.bad("the seal has no inclusion proof"),
            Err(why) => outcome.bad(format!("seal.json: {why}")),
        }
        if let Some(base) = &base {
            let consistent = parse_hashes(&seal.consistency).is_some_and(|proof| {
                base.size() == head.size() && base.hash() == head.hash()
                    || check_tree(&proof, head.size(), *head.hash(), base.size(), *base.hash())
                        .is_ok()
            });
            if consistent {
                outcome.ok(format!(
                    "{CHECKPOINT_FILE} ({} events) is a prefix of the seal's checkpoint ({} \
                     events): one trail (consistency proof)",
                    base.size(),
                    head.size()
                ));
            } else {
                outcome.bad(format!(
                    "{CHECKPOINT_FILE} and the seal's checkpoint are not one trail (the \
                     consistency proof fails)"
                ));
            }
        }
    }
    Ok(outcome)
}

struct HashSink<'a>(&'a mut Sha256);

impl std::io::Write for HashSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
