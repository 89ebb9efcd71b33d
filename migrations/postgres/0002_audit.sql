-- The audit trail: one row per event, each carrying the previous event's hash and its
-- own (SHA-256 over a canonical encoding, see backend/src/audit.rs). audit_head holds the
-- last sequence number and hash, so that a deleted tail is noticed too, and serialises
-- writers: every append updates it first.
CREATE TABLE audit_events (
    seq       BIGINT  PRIMARY KEY,
    at        TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    details   TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
