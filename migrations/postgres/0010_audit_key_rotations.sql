-- Rotations of the checkpoint key (see backend/src/service/tree.rs, rotate_key): the
-- `audit.key_rotated` event (its sequence number and the event as JSON, kept here
-- too so that the announcement outlives the event's move into an archive segment), the
-- old and the new verifier key, and the checkpoint of the trail up to that event signed
-- by both. Exports carry these so that a verifier who pinned either key can follow.
-- Rows are only ever added. Keep in step with the other flavour's file.
CREATE TABLE audit_key_rotations (
    seq     BIGINT PRIMARY KEY,
    old_key TEXT NOT NULL,
    new_key TEXT NOT NULL,
    event   TEXT NOT NULL,
    note    TEXT NOT NULL
);
