//! Signed checkpoints of the audit trail: the events' hashes as the leaves of an RFC 6962
//! Merkle tree, its size and root in a C2SP tlog-checkpoint, signed as a C2SP signed note
//! with the instance's Ed25519 key. A checkpoint copied out of the server's reach commits
//! to the trail as it stood: a trail rewritten from the start (every hash recomputed, so
//! the chain still links) or cut short no longer matches it.

use graftbench_domain::audit::AuditEvent;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tlog_tiles::{Checkpoint, Hash, HashReader};

/// The key file in the data directory: the signer key and the verifier key, one a line.
pub const KEY_FILE: &str = "audit-checkpoint.key";
/// The key's name, and the checkpoints' origin line.
pub const ORIGIN: &str = "graftbench-audit";

/// Why a checkpoint could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The key file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key file or a verifier key is not one.
    #[error("not a checkpoint key: {0}")]
    BadKey(String),
    /// The checkpoint is not a signed note of a checkpoint, or its signature is not the
    /// pinned key's.
    #[error("not a checkpoint signed by this key: {0}")]
    BadCheckpoint(String),
    /// An event's hash is not 32 bytes of hex.
    #[error("event #{0} has no valid hash")]
    BadEvent(i64),
    /// The tree could not be computed.
    #[error("the Merkle tree could not be computed: {0}")]
    Tree(String),
    /// A proof asked for sizes the trail does not have.
    #[error("no such proof: {0}")]
    Range(String),
    /// The trail does not chain where the tree was to grow.
    #[error(transparent)]
    Broken(#[from] graftbench_domain::audit::BrokenChain),
    /// The store failed.
    #[error(transparent)]
    Db(#[from] crate::store::DbError),
    /// This server has no checkpoint key.
    #[error(
        "this server has no checkpoint key ({}): run `graftbench audit key` where checkpoints \
         are to be signed",
        .0.display()
    )]
    NoKey(PathBuf),
    /// This server's key did not sign the checkpoints so far.
    #[error(
        "this server's checkpoint key ({}) is not the one that signed the stored checkpoints: \
         copy the signing server's key file here",
        .0.display()
    )]
    ForeignKey(PathBuf),
    /// This server's key was rotated out.
    #[error(
        "this server's checkpoint key ({}) was retired by the key rotation at event #{seq}: \
         copy the new key file here",
        .path.display()
    )]
    RetiredKey {
        /// The key file.
        path: PathBuf,
        /// The rotation's event.
        seq: i64,
    },
}

/// The instance's keys (signer, verifier), when it has them.
pub fn load_key(data_dir: &Path) -> Result<Option<(String, String)>, CheckpointError> {
    let path = data_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut lines = text.lines();
            match (lines.next(), lines.next()) {
                (Some(skey), Some(vkey)) if skey.starts_with("PRIVATE+KEY+") => {
                    Ok(Some((skey.to_owned(), vkey.to_owned())))
                }
                _ => Err(CheckpointError::BadKey(format!(
                    "{} holds no signer and verifier key",
                    path.display()
                ))),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Key { path, source }),
    }
}

/// Writes a new key to `path` (mode 0600, replacing what is there): (signer, verifier).
pub fn write_new_key(path: &Path) -> Result<(String, String), CheckpointError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key_error = |source| CheckpointError::Key {
        path: path.to_owned(),
        source,
    };
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(key_error)?;
    file.write_all(format!("{skey}\n{vkey}\n").as_bytes())
        .map_err(key_error)?;
    file.sync_all().map_err(key_error)?;
    Ok((skey, vkey))
}

/// The instance's keys: (signer, verifier), made on first use (mode 0600).
pub fn load_or_create_key(data_dir: &Path) -> Result<(String, String), CheckpointError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(KEY_FILE);
    let key_error = |source| CheckpointError::Key {
        path: path.clone(),
        source,
    };
    match load_key(data_dir)? {
        Some(keys) => Ok(keys),
        None => {
            let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
            std::fs::create_dir_all(data_dir).map_err(key_error)?;
            // Readable by the service only, from the moment it exists.
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(key_error)?;
            file.write_all(format!("{skey}\n{vkey}\n").as_bytes())
                .map_err(key_error)?;
            Ok((skey, vkey))
        }
    }
}

/// The trail as an RFC 6962 tree: each event's hash (its 32 bytes) is a leaf. It may
/// start after the first event, from the frontier of the events before (see
/// [`Tree::after`]).
#[derive(Default)]
pub struct Tree {
    /// The stored hashes (tlog's numbering) from `first_stored` on.
    stored: Vec<Hash>,
    first_stored: u64,
    /// The frontier's hashes, by stored index, when the tree starts after event 0.
    frontier: HashMap<u64, Hash>,
    leaves: u64,
}

impl HashReader for Tree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let own = i
                    .checked_sub(self.first_stored)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| self.stored.get(i));
                own.or_else(|| self.frontier.get(&i))
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The stored indexes of the frontier of a tree of `size` leaves: the roots of the
/// complete subtrees it splits into, largest (leftmost) first. Those hashes and the
/// leaves after them give every root of the larger trees, so a part of the trail that
/// does not start at event 1 still verifies against a checkpoint on its own.
pub fn frontier_indexes(size: u64) -> Vec<u64> {
    let mut indexes = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1u64 << level) != 0 {
            indexes.push(tlog_tiles::stored_hash_index(level, start >> level));
            start += 1u64 << level;
        }
    }
    indexes
}

impl Tree {
    /// The tree of the first `size` leaves known only by their frontier
    /// ([`frontier_indexes`], in that order), ready for the leaves after them.
    pub fn after(size: u64, frontier: &[Hash]) -> Result<Tree, CheckpointError> {
        let indexes = frontier_indexes(size);
        if indexes.len() != frontier.len() {
            return Err(CheckpointError::Tree(format!(
                "a tree of {size} event(s) has a frontier of {} hash(es), not {}",
                indexes.len(),
                frontier.len()
            )));
        }
        Ok(Tree {
            stored: Vec::new(),
            first_stored: tlog_tiles::stored_hash_count(size),
            frontier: indexes.into_iter().zip(frontier.iter().copied()).collect(),
            leaves: size,
        })
    }

    /// The tree of `events`, in sequence order.
    pub fn of(events: &[AuditEvent]) -> Result<Tree, CheckpointError> {
        let mut tree = Tree::default();
        for event in events {
            tree.push(event)?;
        }
        Ok(tree)
    }

    /// Adds the next event as a leaf.
    pub fn push(&mut self, event: &AuditEvent) -> Result<(), CheckpointError> {
        let mut leaf = [0u8; 32];
        hex::decode_to_slice(&event.hash, &mut leaf)
            .map_err(|_| CheckpointError::BadEvent(event.seq))?;
        let new = tlog_tiles::stored_hashes(self.leaves, &leaf, &*self)
            .map_err(|e| CheckpointError::Tree(e.to_string()))?;
        self.stored.extend(new);
        self.leaves += 1;
        Ok(())
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.leaves
    }

    /// The root of the tree of its first `n` leaves.
    pub fn root(&self, n: u64) -> Result<Hash, CheckpointError> {
        tlog_tiles::tree_hash(n, self).map_err(|e| CheckpointError::Tree(e.to_string()))
    }
}

/// A signed checkpoint of a tree of `size` events whose root is `root`.
pub fn sign(size: u64, root: Hash, skey: &str) -> Result<String, CheckpointError> {
    sign_by_all(size, root, &[skey])
}

/// A checkpoint signed by each of `skeys` (a key rotation's: the old key and the new).
pub fn sign_by_all(size: u64, root: Hash, skeys: &[&str]) -> Result<String, CheckpointError> {
    let checkpoint = Checkpoint::new(ORIGIN, size, root, "")
        .map_err(|e| CheckpointError::Tree(e.to_string()))?;
    let signers = skeys
        .iter()
        .map(|skey| StandardSigner::new(skey).map_err(|e| CheckpointError::BadKey(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let signers: Vec<&dyn signed_note::Signer> = signers
        .iter()
        .map(|s| s as &dyn signed_note::Signer)
        .collect();
    let mut note = Note::new(&checkpoint.to_bytes(), &[])
        .map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    note.add_sigs(&signers)
        .map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    Ok(String::from_utf8_lossy(&note.to_bytes()).into_owned())
}

/// The checkpoint in `text`, when `vkey` signed it.
pub fn open(text: &[u8], vkey: &str) -> Result<Checkpoint, CheckpointError> {
    let verifier =
        StandardVerifier::new(vkey.trim()).map_err(|e| CheckpointError::BadKey(e.to_string()))?;
    let note = Note::from_bytes(text).map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    Checkpoint::from_bytes(note.text()).map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))
}

/// A key rotation as a verifier checks it: the checkpoint of the trail up to the
/// `audit.key_rotated` event, signed by the old key and the new, and the event's inclusion
/// proof in it.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The signed note.
    pub note: String,
    /// The `audit.key_rotated` event, the tree's last leaf.
    pub event: AuditEvent,
    /// Its inclusion proof in the note's tree.
    pub proof: Vec<Hash>,
}

impl Announcement {
    /// As exports and bundles carry it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "checkpoint": self.note,
            "event": self.event,
            "proof": self.proof.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }

    /// A list of [`Announcement::to_json`]; `None` when it is not one.
    pub fn list_from_json(list: &serde_json::Value) -> Option<Vec<Announcement>> {
        list.as_array()?
            .iter()
            .map(|a| {
                let proof = a
                    .get("proof")?
                    .as_array()?
                    .iter()
                    .map(|h| Hash::parse_hash(h.as_str()?).ok())
                    .collect::<Option<Vec<_>>>()?;
                Some(Announcement {
                    note: a.get("checkpoint")?.as_str()?.to_owned(),
                    event: serde_json::from_value(a.get("event")?.clone()).ok()?,
                    proof,
                })
            })
            .collect()
    }
}

/// The verifier keys a checker trusts, each for the checkpoint sizes it may have signed:
/// the pinned key for any, and the keys rotations announced on their side of the
/// rotation (a retired key signs nothing after it; a new key nothing before it). A
/// rotation is believed when a key already trusted signed its announcement.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    keys: Vec<(String, u64, u64)>,
}

impl TrustedKeys {
    /// Only `vkey`, the pinned key.
    pub fn pinned(vkey: &str) -> TrustedKeys {
        TrustedKeys {
            keys: vec![(vkey.trim().to_owned(), 0, u64::MAX)],
        }
    }

    /// The checkpoint in `text`, when a trusted key signed it within its sizes.
    pub fn open(&self, text: &[u8]) -> Result<Checkpoint, CheckpointError> {
        let mut first_error = None;
        for (vkey, min, max) in &self.keys {
            match open(text, vkey) {
                Ok(checkpoint) if (*min..=*max).contains(&checkpoint.size()) => {
                    return Ok(checkpoint)
                }
                Ok(checkpoint) => {
                    first_error.get_or_insert(CheckpointError::BadCheckpoint(format!(
                        "signed by a key trusted only for checkpoints of {min} to {max} \
                         events, not {} (it was rotated)",
                        checkpoint.size()
                    )));
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| CheckpointError::BadKey("no key is trusted".into())))
    }

    /// Follows `announcements` from the keys trusted (forwards from an old pinned key,
    /// backwards from a new one): what each taught, or why it was not believed.
    pub fn learn(&mut self, announcements: &[Announcement]) -> Vec<Result<String, String>> {
        let mut results: Vec<Option<Result<String, String>>> = vec![None; announcements.len()];
        loop {
            let mut learned = false;
            for (i, announcement) in announcements.iter().enumerate() {
                if matches!(results[i], Some(Ok(_))) {
                    continue;
                }
                let outcome = self.believe(announcement);
                learned |= outcome.is_ok();
                results[i] = Some(outcome);
            }
            if !learned {
                break;
            }
        }
        results.into_iter().flatten().collect()
    }

    fn believe(&mut self, announcement: &Announcement) -> Result<String, String> {
        let event = &announcement.event;
        let what = format!("the key rotation at event #{}", event.seq);
        let checkpoint = self
            .open(announcement.note.as_bytes())
            .map_err(|e| format!("{what}: {e}"))?;
        let size = checkpoint.size();
        if u64::try_from(event.seq) != Ok(size) || event.action != "audit.key_rotated" {
            return Err(format!(
                "{what}: its checkpoint is not of the trail up to a key rotation"
            ));
        }
        let mut leaf = [0u8; 32];
        let proved = event.fields().hash() == event.hash
            && hex::decode_to_slice(&event.hash, &mut leaf).is_ok()
            && tlog_tiles::check_record(
                &announcement.proof,
                size,
                *checkpoint.hash(),
                size - 1,
                tlog_tiles::record_hash(&leaf),
            )
            .is_ok();
        if !proved {
            return Err(format!(
                "{what}: the event is not the last of the checkpoint's tree (changed)"
            ));
        }
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
        let (Some(old_key), Some(new_key)) =
            (details["old_key"].as_str(), details["new_key"].as_str())
        else {
            return Err(format!("{what}: the event names no old and new key"));
        };
        for key in [old_key, new_key] {
            if open(announcement.note.as_bytes(), key).is_err() {
                return Err(format!("{what}: its checkpoint is not signed by both keys"));
            }
        }
        // A key already trusted (the pinned one) narrows to its side of the rotation.
        for (key, min, max) in [(old_key.trim(), 0, size), (new_key.trim(), size, u64::MAX)] {
            match self.keys.iter_mut().find(|(k, ..)| k == key) {
                Some((_, known_min, known_max)) => {
                    *known_min = (*known_min).max(min);
                    *known_max = (*known_max).min(max);
                }
                None => self.keys.push((key.to_owned(), min, max)),
            }
        }
        Ok(format!(
            "{what}: announced by a trusted key, whose checkpoint of {size} event(s) both keys \
             signed: the key retired there signs checkpoints up to it, the new one from it on"
        ))
    }
}

/// How the trail stands against a checkpoint kept outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Against {
    /// The trail's first `size` events are what the checkpoint committed to.
    Agrees {
        /// The checkpoint's size.
        size: u64,
    },
    /// The trail has fewer events than the checkpoint committed to.
    Truncated {
        /// Events in the trail.
        have: u64,
        /// Events the checkpoint committed to.
        size: u64,
    },
    /// The trail's first `size` events are not the ones the checkpoint committed to.
    Rewritten {
        /// The checkpoint's size.
        size: u64,
    },
}

/// Compares the trail (`tree`) with `checkpoint`.
pub fn compare(tree: &Tree, checkpoint: &Checkpoint) -> Result<Against, CheckpointError> {
    let size = checkpoint.size();
    if tree.size() < size {
        return Ok(Against::Truncated {
            have: tree.size(),
            size,
        });
    }
    Ok(if tree.root(size)? == *checkpoint.hash() {
        Against::Agrees { size }
    } else {
        Against::Rewritten { size }
    })
}

/// The trail against every checkpoint held outside it: a line for each, and what is
/// wrong, if anything.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// One line per checkpoint, smallest first.
    pub report: Vec<String>,
    /// Deleted events or a rewrite, bounded by the checkpoints that agree and disagree.
    pub problem: Option<String>,
}

/// Compares the trail with each of `held` (any order). A rewrite is bounded: the first
/// changed event lies after the largest checkpoint that still agrees and at or before
/// the smallest that does not.
pub fn against_all(tree: &Tree, held: &[Checkpoint]) -> Result<Verdict, CheckpointError> {
    let mut sorted: Vec<&Checkpoint> = held.iter().collect();
    sorted.sort_by_key(|c| c.size());
    let mut verdict = Verdict::default();
    let mut last_agreeing = 0;
    for checkpoint in sorted {
        match compare(tree, checkpoint)? {
            Against::Agrees { size } => {
                last_agreeing = size;
                verdict.report.push(format!(
                    "the trail agrees with the checkpoint: its first {size} event(s)"
                ));
            }
            Against::Truncated { have, size } => {
                verdict.problem = Some(format!(
                    "the trail has {have} event(s) but the checkpoint committed to {size}: \
                     events were deleted"
                ));
                break;
            }
            Against::Rewritten { size } => {
                verdict.problem = Some(format!(
                    "the trail's first {size} event(s) are not the ones the checkpoint \
                     committed to: the trail was rewritten; the first changed event is \
                     between #{} and #{size}{}",
                    last_agreeing + 1,
                    if last_agreeing > 0 {
                        format!(" (the checkpoint of {last_agreeing} still agrees)")
                    } else {
                        String::new()
                    }
                ));
                break;
            }
        }
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn event(seq: i64) -> AuditEvent {
        AuditEvent {
            seq,
            at: String::new(),
            actor: String::new(),
            action: String::new(),
            subject: String::new(),
            details: String::new(),
            prev_hash: String::new(),
            hash: hex::encode(sha2::Sha256::digest(seq.to_be_bytes())),
        }
    }

    #[test]
    fn a_tree_started_from_a_frontier_has_the_whole_trees_roots() {
        let events: Vec<AuditEvent> = (1..=70).map(event).collect();
        let whole = Tree::of(&events).unwrap();
        for start in 0..70u64 {
            let frontier = whole
                .read_hashes(&frontier_indexes(start))
                .expect("the whole tree holds every frontier");
            let mut part = Tree::after(start, &frontier).unwrap();
            for e in &events[start as usize..] {
                part.push(e).unwrap();
            }
            for n in start.max(1)..=70 {
                assert_eq!(part.root(n).unwrap(), whole.root(n).unwrap(), "{start} {n}");
            }
            // Of the smaller trees, it knows at most some roots (those its frontier holds):
            // never a wrong one.
            for n in 1..start {
                if let Ok(root) = part.root(n) {
                    assert_eq!(root, whole.root(n).unwrap(), "{start} {n}");
                }
            }
        }
        assert!(Tree::after(5, &[]).is_err());
    }
}
