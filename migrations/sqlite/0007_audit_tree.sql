-- The audit trail's RFC 6962 Merkle tree, kept as it grows (see
-- backend/src/service/tree.rs): every stored hash of the tree of the events' hashes,
-- by tlog's stored-hash index, and how many events (leaves) it holds. Proofs and roots
-- read a few dozen of these instead of rebuilding the tree from every event, and the
-- events already in the tree are known to have chained correctly when they entered it.
-- Rows are only ever added. Keep in step with the other flavour's 0007_audit_tree.sql.
CREATE TABLE audit_tree (
    idx  INTEGER PRIMARY KEY,
    hash BLOB    NOT NULL
);
CREATE TABLE audit_tree_head (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    leaves INTEGER NOT NULL
);
INSERT INTO audit_tree_head (id, leaves) VALUES (1, 0);

-- The time of the newest event: an append that reads an earlier time from the clock
-- records that the clock stepped backwards.
ALTER TABLE audit_head ADD COLUMN at TEXT NOT NULL DEFAULT '';
UPDATE audit_head SET at = COALESCE((SELECT MAX(at) FROM audit_events), '');
