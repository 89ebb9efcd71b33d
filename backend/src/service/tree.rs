//! The audit trail's Merkle tree as the database keeps it. Events enter the tree in
//! order, each checked against the chain as it enters (sequence, link, own hash); roots
//! and proofs then read the few dozen stored hashes they need instead of every event, so
//! they cost the same with a million events as with ten, and a view of the audit page
//! checks only what was appended since.

use super::checkpoints::{self, CheckpointError};
use crate::store::Database;
use graftbench_domain::audit::{BrokenChain, ChainWalk};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use tlog_tiles::{Hash, HashReader};

/// Events read and added per transaction: bounds memory and the time a writer waits.
const CHUNK: i64 = 20_000;

/// The stored tree, with the hashes read so far.
pub struct StoredTree<'a> {
    db: &'a Database,
    known: HashMap<u64, Hash>,
}

/// Answers from the hashes in hand and notes the ones it lacks, so that the caller can
/// fetch exactly those and ask again (each tlog function reads its hashes in one call).
struct Reader<'a> {
    known: &'a HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let mut found = Vec::with_capacity(indexes.len());
        let mut missing = self.missing.borrow_mut();
        for index in indexes {
            match self.known.get(index) {
                Some(hash) => found.push(*hash),
                None => missing.push(*index),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(tlog_tiles::Error::IndexesNotInTree)
        }
    }
}

/// The leaf of an event: the 32 bytes of its hash.
fn leaf_of(seq: i64, hash: &str) -> Result<[u8; 32], CheckpointError> {
    let mut leaf = [0u8; 32];
    hex::decode_to_slice(hash, &mut leaf).map_err(|_| CheckpointError::BadEvent(seq))?;
    Ok(leaf)
}

impl<'a> StoredTree<'a> {
    /// The tree stored in `db`.
    pub fn new(db: &'a Database) -> StoredTree<'a> {
        StoredTree {
            db,
            known: HashMap::new(),
        }
    }

    /// Runs `compute` with the stored hashes it asks for.
    async fn with_hashes<T>(
        &mut self,
        compute: impl Fn(&Reader<'_>) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T, CheckpointError> {
        // One round fetches everything a tlog function asks for; a second is never needed
        // unless the table lacks a hash, which is corruption.
        for _ in 0..2 {
            let missing = {
                let reader = Reader {
                    known: &self.known,
                    missing: RefCell::new(Vec::new()),
                };
                match compute(&reader) {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        let missing = reader.missing.into_inner();
                        if missing.is_empty() {
                            return Err(CheckpointError::Tree(e.to_string()));
                        }
                        missing
                    }
                }
            };
            for (index, hash) in self.db.tree_hashes(&missing).await? {
                self.known.insert(index, Hash(hash));
            }
        }
        Err(CheckpointError::Tree(
            "the stored tree lacks hashes it should hold".into(),
        ))
    }

    /// Adds every event not yet in the tree, checking each against the chain as it goes
    /// (and the last event already in it against the tree's leaf). Returns the events the
    /// tree holds. A broken chain stops it at the first bad event: nothing after it enters.
    pub async fn grow(&mut self) -> Result<u64, CheckpointError> {
        loop {
            let leaves = self.db.tree_leaves().await?;
            let mut walk = ChainWalk::default();
            if leaves > 0 {
                let seq = i64::try_from(leaves).unwrap_or(i64::MAX);
                let anchor = self.db.events_after(seq - 1, 1).await?;
                let Some(anchor) = anchor.first().filter(|e| e.seq == seq) else {
                    return Err(BrokenChain {
                        seq,
                        why: "it is gone, though the Merkle tree holds it (deleted)".into(),
                    }
                    .into());
                };
                let index = tlog_tiles::stored_hash_index(0, leaves - 1);
                let stored = self.with_hashes(|r| r.read_hashes(&[index])).await?;
                if stored.first() != Some(&tlog_tiles::record_hash(&leaf_of(seq, &anchor.hash)?)) {
                    return Err(BrokenChain {
                        seq,
                        why: "it is not the event the Merkle tree holds (changed after it was \
                              added)"
                            .into(),
                    }
                    .into());
                }
                walk = ChainWalk::after(anchor.seq, &anchor.hash);
            }
            let events = self
                .db
                .events_after(i64::try_from(leaves).unwrap_or(i64::MAX), CHUNK)
                .await?;
            if events.is_empty() {
                return Ok(leaves);
            }
            let mut added = Vec::with_capacity(events.len() * 2);
            let mut size = leaves;
            for event in &events {
                walk.step(event)?;
                let leaf = leaf_of(event.seq, &event.hash)?;
                let hashes = self
                    .with_hashes(|r| tlog_tiles::stored_hashes(size, &leaf, r))
                    .await?;
                let first = tlog_tiles::stored_hash_count(size);
                for (index, hash) in (first..).zip(hashes) {
                    self.known.insert(index, hash);
                    added.push((index, hash.0));
                }
                size += 1;
            }
            // Another replica or page view may have grown it meanwhile: start again from
            // what it stored (the hashes are the same, being of the same events).
            let grew = self.db.grow_tree(leaves, size, &added).await?;
            self.known.clear();
            if grew && events.len() < CHUNK as usize {
                return Ok(size);
            }
        }
    }

    /// The root of the tree of the first `size` events (at most the leaves it holds).
    pub async fn root(&mut self, size: u64) -> Result<Hash, CheckpointError> {
        self.with_hashes(|r| tlog_tiles::tree_hash(size, r)).await
    }

    /// The frontier of the tree of the first `size` events
    /// ([`checkpoints::frontier_indexes`]): what the events after them need to rebuild
    /// every larger tree's root.
    pub async fn frontier(&mut self, size: u64) -> Result<Vec<Hash>, CheckpointError> {
        let leaves = self.grow().await?;
        if size > leaves {
            return Err(CheckpointError::Range(format!(
                "the frontier of {size} event(s): the trail has {leaves}"
            )));
        }
        let indexes = checkpoints::frontier_indexes(size);
        self.with_hashes(|r| r.read_hashes(&indexes)).await
    }

    /// The inclusion proof of event `seq` (1-based) in the tree of the first `size`
    /// events, from the leaf up (RFC 6962 §2.1.1).
    pub async fn inclusion_proof(
        &mut self,
        seq: u64,
        size: u64,
    ) -> Result<Vec<Hash>, CheckpointError> {
        let leaves = self.grow().await?;
        if seq == 0 || seq > size || size > leaves {
            return Err(CheckpointError::Range(format!(
                "event {seq} in a tree of {size}: need 1 <= seq <= size <= {leaves} (the trail)"
            )));
        }
        self.with_hashes(|r| tlog_tiles::prove_record(size, seq - 1, r))
            .await
    }

    /// The inclusion proofs of events `seqs` in the tree of the first `size` events, with
    /// one read of the stored hashes for all of them (exports prove thousands).
    pub async fn inclusion_proofs(
        &mut self,
        seqs: &[u64],
        size: u64,
    ) -> Result<Vec<Vec<Hash>>, CheckpointError> {
        let leaves = self.grow().await?;
        if let Some(bad) = seqs
            .iter()
            .find(|&&seq| seq == 0 || seq > size || size > leaves)
        {
            return Err(CheckpointError::Range(format!(
                "event {bad} in a tree of {size}: need 1 <= seq <= size <= {leaves} (the trail)"
            )));
        }
        let proofs = self
            .with_hashes(|r| {
                // Every proof asks, so that one round fetches what all of them need.
                let mut proofs = Vec::with_capacity(seqs.len());
                let mut failed = None;
                for seq in seqs {
                    match tlog_tiles::prove_record(size, seq - 1, r) {
                        Ok(proof) => proofs.push(proof),
                        Err(e) => failed = Some(e),
                    }
                }
                failed.map_or(Ok(proofs), Err)
            })
            .await;
        // Memory stays bounded by one batch.
        self.known.clear();
        proofs
    }

    /// The proof that the tree of the first `from` events is a prefix of the tree of the
    /// first `to` (RFC 6962 §2.1.2).
    pub async fn consistency_proof(
        &mut self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, CheckpointError> {
        let leaves = self.grow().await?;
        if from == 0 || from > to || to > leaves {
            return Err(CheckpointError::Range(format!(
                "from {from} to {to}: need 1 <= from <= to <= {leaves} (the trail)"
            )));
        }
        self.with_hashes(|r| tlog_tiles::prove_tree(to, from, r))
            .await
    }
}

/// The trail as a view of the audit page finds it.
#[derive(Debug, Clone)]
pub struct TrailCheck {
    /// Events in the tree: each was checked against the chain when it entered.
    pub leaves: u64,
    /// Where the chain breaks, when it does.
    pub broken: Option<String>,
}

/// Checks what was appended since the last check (growing the tree over it), that the
/// newest event in the tree is still the one it holds, and that the head names the last
/// event: a cost proportional to the new events, not to the trail. An edit to an older
/// event is found by `graftbench audit verify` (the full walk, and the tree's root).
pub async fn check(db: &Database) -> Result<TrailCheck, CheckpointError> {
    // The head first: events appended while the tree grows only make the tree longer.
    let (head_seq, head_hash) = db.audit_head().await?;
    let leaves = match StoredTree::new(db).grow().await {
        Ok(leaves) => leaves,
        Err(CheckpointError::Broken(broken)) => {
            return Ok(TrailCheck {
                leaves: db.tree_leaves().await?,
                broken: Some(broken.to_string()),
            })
        }
        Err(e) => return Err(e),
    };
    let deleted = |why: String| BrokenChain {
        seq: i64::try_from(leaves).unwrap_or(i64::MAX) + 1,
        why,
    };
    let broken = match u64::try_from(head_seq) {
        Ok(head) if head > leaves => Some(deleted(format!(
            "the head records event #{head_seq} but the trail ends at #{leaves} (events \
             deleted from the end)"
        ))),
        Ok(head) if head > 0 && head == leaves => {
            let last = db.events_after(head_seq - 1, 1).await?;
            (last.first().map(|e| e.hash.as_str()) != Some(head_hash.as_str())).then(|| {
                deleted("the head's hash is not the last event's (the end was rewritten)".into())
            })
        }
        _ => None,
    };
    Ok(TrailCheck {
        leaves,
        broken: broken.map(|b| b.to_string()),
    })
}

/// A checkpoint just made and stored.
#[derive(Debug, Clone)]
pub struct Made {
    /// Events it commits to.
    pub size: u64,
    /// The signed note.
    pub note: String,
}

/// Grows the stored tree over every event (checking the chain as it goes), signs a
/// checkpoint of it with the instance's key in `data_dir` (made by `graftbench audit
/// key`, never here: replicas must not each invent one) and stores it. The newest stored
/// checkpoint must carry the same key's signature. Signing the same size twice gives the
/// same note (Ed25519 is deterministic): replicas racing here store one.
pub async fn sign_checkpoint(db: &Database, data_dir: &Path) -> Result<Made, CheckpointError> {
    let size = StoredTree::new(db).grow().await?;
    sign_checkpoint_of(db, data_dir, size).await
}

/// Signs and stores a checkpoint of the first `size` events (at most the events the
/// stored tree holds), as [`sign_checkpoint`] does; an archive segment's own checkpoint
/// ends exactly at its last event.
pub async fn sign_checkpoint_of(
    db: &Database,
    data_dir: &Path,
    size: u64,
) -> Result<Made, CheckpointError> {
    let Some((skey, vkey)) = checkpoints::load_key(data_dir)? else {
        return Err(CheckpointError::NoKey(data_dir.join(checkpoints::KEY_FILE)));
    };
    check_signer(db, data_dir, &vkey).await?;
    if size == 0 {
        return Err(CheckpointError::Range(
            "the trail has no events yet: there is nothing to sign".into(),
        ));
    }
    let leaves = db.tree_leaves().await?;
    if size > leaves {
        return Err(CheckpointError::Range(format!(
            "a checkpoint of {size} event(s): the Merkle tree holds {leaves}"
        )));
    }
    let stored_size = i64::try_from(size).unwrap_or(i64::MAX);
    if let Some(stored) = db.checkpoint(stored_size).await? {
        if checkpoints::open(stored.note.as_bytes(), &vkey).is_ok() {
            return Ok(Made {
                size,
                note: stored.note,
            });
        }
    }
    let root = StoredTree::new(db).root(size).await?;
    let note = checkpoints::sign(size, root, &skey)?;
    db.store_checkpoint(stored_size, &root.to_string(), &note)
        .await?;
    Ok(Made { size, note })
}

/// Refuses a key that did not sign the newest stored checkpoint, or that a rotation
/// retired (a replica that was not given the new key must stop signing).
async fn check_signer(db: &Database, data_dir: &Path, vkey: &str) -> Result<(), CheckpointError> {
    let path = data_dir.join(checkpoints::KEY_FILE);
    let rotation = db.key_rotations().await?.pop();
    if let Some(rotation) = &rotation {
        if rotation.new_key.trim() != vkey.trim() {
            return Err(CheckpointError::RetiredKey {
                path,
                seq: rotation.event.seq,
            });
        }
    }
    if let Some(newest) = db.checkpoints(1).await?.into_iter().next() {
        // The old key signed up to the rotation that brought this key in (and perhaps a
        // little after, on a replica that signed while the rotation was being recorded).
        let by_the_old_key = rotation.is_some_and(|r| {
            newest.size <= r.event.seq
                || checkpoints::open(newest.note.as_bytes(), &r.old_key).is_ok()
        });
        if !by_the_old_key && checkpoints::open(newest.note.as_bytes(), vkey).is_err() {
            return Err(CheckpointError::ForeignKey(path));
        }
    }
    Ok(())
}

/// A key rotation just made.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The `audit.key_rotated` event's sequence number.
    pub seq: i64,
    /// The new verifier key.
    pub new_key: String,
    /// The rotation statement, signed by both keys.
    pub note: String,
}

/// The new key's file while a rotation runs.
const NEW_KEY_FILE: &str = "audit-checkpoint.key.new";

/// Replaces the instance's checkpoint key: records an `audit.key_rotated` event naming
/// the old and the new verifier key, signs the rotation statement of the trail up to it
/// with both keys (the old key announcing the new; the checkpoint of that size is signed
/// by both too), keeps the statement, and only then puts the new key in place of the
/// old, whose signer half is gone. Verifiers who pinned the old key follow the rotation
/// forwards (exports carry the statements); the retired key's checkpoints are trusted up
/// to the rotation only.
pub async fn rotate_key(
    db: &Database,
    data_dir: &Path,
    actor: &str,
) -> Result<Rotated, CheckpointError> {
    let pending = data_dir.join(NEW_KEY_FILE);
    let key_error = |source| CheckpointError::Key {
        path: data_dir.join(checkpoints::KEY_FILE),
        source,
    };
    // A new key already waiting: a rotation cut short after the database recorded it is
    // finished; anything else is another rotation running (or one cut short before it
    // was recorded, whose file is then left for a person to remove).
    if let Some((_, waiting)) = checkpoints::load_key_file(&pending)? {
        let recorded = db.key_rotations().await?.pop();
        if let Some(rotation) = recorded.filter(|r| r.new_key.trim() == waiting.trim()) {
            std::fs::rename(&pending, data_dir.join(checkpoints::KEY_FILE)).map_err(key_error)?;
            return Ok(Rotated {
                seq: rotation.event.seq,
                new_key: rotation.new_key,
                note: rotation.note,
            });
        }
        return Err(CheckpointError::BadKey(format!(
            "{} exists: another rotation is running, or one was cut short before it was \
             recorded (remove the file if no rotation is running)",
            pending.display()
        )));
    }
    let Some((old_skey, old_vkey)) = checkpoints::load_key(data_dir)? else {
        return Err(CheckpointError::NoKey(data_dir.join(checkpoints::KEY_FILE)));
    };
    check_signer(db, data_dir, &old_vkey).await?;
    // Written (and synced) before the database names it, and only if no other rotation
    // made it first: a rotation cut short leaves the old key in force.
    let (new_skey, new_vkey) = checkpoints::write_new_key(&pending)?;
    let recorded = async {
        let seq = db
            .record(
                actor,
                graftbench_domain::audit::AuditAction::AuditKeyRotated,
                &graftbench_domain::audit::AuditSubject::Trail,
                &serde_json::json!({ "old_key": old_vkey, "new_key": new_vkey }),
            )
            .await?;
        let mut tree = StoredTree::new(db);
        tree.grow().await?;
        let size = u64::try_from(seq).unwrap_or(0);
        let root = tree.root(size).await?;
        let note = checkpoints::sign_by_all(size, root, &[&old_skey, &new_skey])?;
        let statement =
            checkpoints::sign_rotation((&old_skey, &old_vkey), (&new_skey, &new_vkey), size, root)?;
        let event = db
            .events_after(seq - 1, 1)
            .await?
            .into_iter()
            .next()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| CheckpointError::Range(format!("event #{seq} is gone")))?;
        db.store_key_rotation(&crate::store::audit::KeyRotation {
            event,
            old_key: old_vkey,
            new_key: new_vkey.clone(),
            note: statement.clone(),
        })
        .await?;
        Ok::<_, CheckpointError>((seq, root, note, statement))
    }
    .await;
    let (seq, root, note, statement) = match recorded {
        Ok(done) => done,
        Err(e) => {
            // Not recorded: the old key stays in force and the next attempt starts afresh.
            // (An error reported after the rotation was in fact recorded keeps the file:
            // the next attempt puts it in place.)
            let recorded = db
                .key_rotations()
                .await
                .map(|all| all.iter().any(|r| r.new_key.trim() == new_vkey.trim()));
            if let Ok(false) = recorded {
                let _ = std::fs::remove_file(&pending);
            }
            return Err(e);
        }
    };
    db.store_checkpoint(seq, &root.to_string(), &note).await?;
    std::fs::rename(&pending, data_dir.join(checkpoints::KEY_FILE)).map_err(key_error)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(key_error)?;
    Ok(Rotated {
        seq,
        new_key: new_vkey,
        note: statement,
    })
}

/// The announcements of every key rotation, with their inclusion proofs from the stored
/// tree, for a verifier to follow forwards from the key it pinned.
pub async fn announcements(
    db: &Database,
) -> Result<Vec<checkpoints::Announcement>, CheckpointError> {
    let mut tree = StoredTree::new(db);
    let mut out = Vec::new();
    for rotation in db.key_rotations().await? {
        let size = u64::try_from(rotation.event.seq).unwrap_or(0);
        let proof = tree.inclusion_proof(size, size).await?;
        out.push(checkpoints::Announcement {
            note: rotation.note,
            event: rotation.event,
            proof,
        });
    }
    Ok(out)
}
