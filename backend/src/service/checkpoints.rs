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
         copy the new key file here (after a rotation cut short on this server, \
         `graftbench audit rotate-key` puts the new key in place)",
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
    load_key_file(&data_dir.join(KEY_FILE))
}

/// The keys in the key file `path`, when it exists.
pub fn load_key_file(path: &Path) -> Result<Option<(String, String)>, CheckpointError> {
    let path = path.to_owned();
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

/// Writes a new key to `path`, which must not exist (mode 0600): (signer, verifier).
pub fn write_new_key(path: &Path) -> Result<(String, String), CheckpointError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key_error = |source| CheckpointError::Key {
        path: path.to_owned(),
        source,
    };
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
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
    signed_note_of(&checkpoint.to_bytes(), skeys)
}

/// `text` as a signed note, signed by each of `skeys`.
fn signed_note_of(text: &[u8], skeys: &[&str]) -> Result<String, CheckpointError> {
    let signers = skeys
        .iter()
        .map(|skey| StandardSigner::new(skey).map_err(|e| CheckpointError::BadKey(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let signers: Vec<&dyn signed_note::Signer> = signers
        .iter()
        .map(|s| s as &dyn signed_note::Signer)
        .collect();
    let mut note =
        Note::new(text, &[]).map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    note.add_sigs(&signers)
        .map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    Ok(String::from_utf8_lossy(&note.to_bytes()).into_owned())
}

/// The checkpoint in `text`, when `vkey` signed it.
pub fn open(text: &[u8], vkey: &str) -> Result<Checkpoint, CheckpointError> {
    let signed = signed_text(text, vkey)?;
    if signed.starts_with(ROTATION_ORIGIN.as_bytes()) {
        return Err(CheckpointError::BadCheckpoint(
            "a key rotation statement, not a checkpoint".into(),
        ));
    }
    Checkpoint::from_bytes(&signed).map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))
}

/// The text of the signed note `text`, when `vkey` signed it.
fn signed_text(text: &[u8], vkey: &str) -> Result<Vec<u8>, CheckpointError> {
    let verifier =
        StandardVerifier::new(vkey.trim()).map_err(|e| CheckpointError::BadKey(e.to_string()))?;
    let note = Note::from_bytes(text).map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    note.verify(&VerifierList::new(vec![Box::new(verifier)]))
        .map_err(|e| CheckpointError::BadCheckpoint(e.to_string()))?;
    Ok(note.text().to_vec())
}

/// The first line of a key rotation statement: a note only `graftbench audit rotate-key`
/// signs (never the automatic signer, which signs checkpoints of whatever the database
/// holds), so that a database writer cannot have the instance's key vouch for a key.
pub const ROTATION_ORIGIN: &str = "graftbench-audit key rotation";

/// A key rotation statement: the old and the new verifier key, and the size and root
/// of the trail up to the `audit.key_rotated` event, signed by both keys.
pub fn sign_rotation(
    old: (&str, &str),
    new: (&str, &str),
    size: u64,
    root: Hash,
) -> Result<String, CheckpointError> {
    let text = format!(
        "{ROTATION_ORIGIN}\n{}\n{}\n{size}\n{root}\n",
        old.1.trim(),
        new.1.trim()
    );
    signed_note_of(text.as_bytes(), &[old.0, new.0])
}

/// A rotation statement's (old key, new key, size, root), when it is one.
fn rotation_fields(text: &[u8]) -> Option<(String, String, u64, Hash)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.lines();
    if lines.next()? != ROTATION_ORIGIN {
        return None;
    }
    let old = lines.next()?.to_owned();
    let new = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root = Hash::parse_hash(lines.next()?).ok()?;
    lines.next().is_none().then_some((old, new, size, root))
}

/// A key rotation as a verifier checks it: the rotation statement ([`sign_rotation`]),
/// signed by the old key and the new, the `audit.key_rotated` event and its inclusion
/// proof in the tree the statement names (the event is its last leaf).
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The signed rotation statement.
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
    /// Rotations believed: (old key, new key), each key at most once on either side.
    rotations: Vec<(String, String)>,
}

/// The most announcements a verifier follows.
const MAX_ANNOUNCEMENTS: usize = 100;

impl TrustedKeys {
    /// The pinned keys: each line of `vkeys` one verifier key (a file may hold a key and
    /// the ones before it, for evidence signed before a rotation).
    pub fn pinned(vkeys: &str) -> TrustedKeys {
        TrustedKeys {
            keys: vkeys
                .lines()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| (k.to_owned(), 0, u64::MAX))
                .collect(),
            rotations: Vec::new(),
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

    /// Follows `announcements` forwards from the keys trusted: what each taught, or why
    /// it was not believed. One whose old key is not trusted is not followed (and not a
    /// problem: a verifier who pinned the newest key needs none): following a rotation
    /// backwards would trust a retired, perhaps leaked, key for any checkpoint before it.
    pub fn learn(&mut self, announcements: &[Announcement]) -> Vec<Result<String, String>> {
        if announcements.len() > MAX_ANNOUNCEMENTS {
            return vec![Err(format!(
                "{} key announcements: more than the {MAX_ANNOUNCEMENTS} a verifier follows",
                announcements.len()
            ))];
        }
        // Err((true, why)): not (yet) from a trusted key; Err((false, why)): not valid.
        let mut results: Vec<Option<Result<String, (bool, String)>>> =
            vec![None; announcements.len()];
        loop {
            let mut learned = false;
            for (i, announcement) in announcements.iter().enumerate() {
                if matches!(results[i], Some(Ok(_)) | Some(Err((false, _)))) {
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
        results
            .into_iter()
            .flatten()
            .map(|result| match result {
                Ok(line) | Err((true, line)) => Ok(line),
                Err((false, line)) => Err(line),
            })
            .collect()
    }

    /// Whether `vkey` is trusted for a tree of `size` events: its range, when it is.
    fn range_at(&self, vkey: &str, size: u64) -> Option<(u64, u64)> {
        self.keys
            .iter()
            .find(|(k, min, max)| k == vkey && (*min..=*max).contains(&size))
            .map(|(_, min, max)| (*min, *max))
    }

    /// Checks and follows one announcement. `Err((true, why))` when its old key is not
    /// trusted (yet), `Err((false, why))` when it is not a valid announcement.
    fn believe(&mut self, announcement: &Announcement) -> Result<String, (bool, String)> {
        let invalid = |why: String| (false, why);
        let event = &announcement.event;
        let what = format!("the key rotation at event #{}", event.seq);
        let text = Note::from_bytes(announcement.note.as_bytes())
            .map(|note| note.text().to_vec())
            .map_err(|e| invalid(format!("{what}: not a signed note ({e})")))?;
        let (old_key, new_key, size, root) = rotation_fields(&text)
            .ok_or_else(|| invalid(format!("{what}: not a key rotation statement")))?;
        // Signed by both keys, each of them the statement's own.
        for key in [&old_key, &new_key] {
            signed_text(announcement.note.as_bytes(), key).map_err(|_| {
                invalid(format!("{what}: the statement is not signed by both keys"))
            })?;
        }
        if size == 0 || u64::try_from(event.seq) != Ok(size) || event.action != "audit.key_rotated"
        {
            return Err(invalid(format!(
                "{what}: the statement is not of the trail up to a key rotation"
            )));
        }
        let details: serde_json::Value = serde_json::from_str(&event.details).unwrap_or_default();
        if details["old_key"].as_str().map(str::trim) != Some(old_key.as_str())
            || details["new_key"].as_str().map(str::trim) != Some(new_key.as_str())
        {
            return Err(invalid(format!(
                "{what}: the event names other keys than the statement"
            )));
        }
        let mut leaf = [0u8; 32];
        let proved = announcement.proof.len() <= 64
            && event.fields().hash() == event.hash
            && hex::decode_to_slice(&event.hash, &mut leaf).is_ok()
            && tlog_tiles::check_record(
                &announcement.proof,
                size,
                root,
                size - 1,
                tlog_tiles::record_hash(&leaf),
            )
            .is_ok();
        if !proved {
            return Err(invalid(format!(
                "{what}: the event is not the last of the statement's tree (changed)"
            )));
        }
        // A key has one successor and one predecessor: a second rotation from or to it is
        // a forgery (by whoever holds a retired key) or a fork; neither is followed.
        if let Some((o, n)) = self
            .rotations
            .iter()
            .find(|(o, n)| (o == &old_key) != (n == &new_key))
        {
            return Err(invalid(format!(
                "{what}: conflicts with the rotation from {o} to {n} (a key rotated twice)"
            )));
        }
        if self.rotations.contains(&(old_key.clone(), new_key.clone())) {
            return Ok(format!("{what}: already followed"));
        }
        // Followed forwards only, from an old key trusted at that size: the new one
        // inherits what was left of its range.
        let Some((_, old_max)) = self.range_at(&old_key, size) else {
            return Err((
                true,
                format!(
                    "{what}: not followed, its old key is not pinned (evidence signed before \
                     it checks with that key pinned too)"
                ),
            ));
        };
        let new_range = (size, old_max);
        for (key, min, max) in [
            (old_key.as_str(), 0, size),
            (new_key.as_str(), new_range.0, new_range.1),
        ] {
            match self.keys.iter_mut().find(|(k, ..)| k == key) {
                Some((_, known_min, known_max)) => {
                    *known_min = (*known_min).max(min);
                    *known_max = (*known_max).min(max);
                }
                None => self.keys.push((key.to_owned(), min, max)),
            }
        }
        self.rotations.push((old_key, new_key));
        Ok(format!(
            "{what}: announced by a trusted key, both keys signed the statement of the trail's \
             first {size} event(s): the key retired there signs checkpoints up to it, the new \
             one from it on"
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
    fn only_a_rotation_statement_signed_by_a_trusted_key_announces_a_key() {
        let key = || signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let ((p_skey, p_vkey), (a_skey, a_vkey)) = (key(), key());
        let mut rotation = AuditEvent {
            seq: 2,
            at: "2026-12-01T00:00:00.000Z".into(),
            actor: "system".into(),
            action: "audit.key_rotated".into(),
            subject: "audit:trail".into(),
            details: serde_json::json!({ "old_key": p_vkey, "new_key": a_vkey }).to_string(),
            prev_hash: event(1).hash,
            hash: String::new(),
        };
        rotation.hash = rotation.fields().hash();
        let tree = Tree::of(&[event(1), rotation.clone()]).unwrap();
        let root = tree.root(2).unwrap();
        let proof = tlog_tiles::prove_record(2, 1, &tree).unwrap();
        let announce = |note: String| Announcement {
            note,
            event: rotation.clone(),
            proof: proof.clone(),
        };
        // What a database writer can have the instance's key sign: a checkpoint of a
        // trail it wrote, here with its own key's signature added. Not an announcement.
        let mut keys = TrustedKeys::pinned(&p_vkey);
        let forged = sign_by_all(2, root, &[&p_skey, &a_skey]).unwrap();
        assert!(keys.learn(&[announce(forged)])[0].is_err());
        let by_a = sign(2, root, &a_skey).unwrap();
        assert!(keys.open(by_a.as_bytes()).is_err());
        // The statement only a rotation signs is followed forwards from the old key...
        let statement = sign_rotation((&p_skey, &p_vkey), (&a_skey, &a_vkey), 2, root).unwrap();
        assert!(keys.learn(&[announce(statement.clone())])[0].is_ok());
        assert!(keys.open(by_a.as_bytes()).is_ok());
        assert!(keys
            .open(sign(1, tree.root(1).unwrap(), &p_skey).unwrap().as_bytes())
            .is_ok());
        // ... and the retired key signs nothing after it.
        let late = sign(3, root, &p_skey).unwrap();
        assert!(keys.open(late.as_bytes()).is_err());
        // Never backwards from the new key: that would trust a retired, perhaps leaked,
        // key for any checkpoint before the rotation. Pinning both keys is how evidence
        // from before a rotation checks, and the retired one still stops at it.
        let early = sign(1, tree.root(1).unwrap(), &p_skey).unwrap();
        let mut keys = TrustedKeys::pinned(&a_vkey);
        assert!(keys.learn(&[announce(statement.clone())])[0]
            .as_ref()
            .is_ok_and(|line| line.contains("not followed")));
        assert!(keys.open(early.as_bytes()).is_err());
        let mut keys = TrustedKeys::pinned(&format!("{a_vkey}\n{p_vkey}\n"));
        assert!(keys.learn(&[announce(statement)])[0].is_ok());
        assert!(keys.open(early.as_bytes()).is_ok());
        assert!(keys.open(late.as_bytes()).is_err());
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
