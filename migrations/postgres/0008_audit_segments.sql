-- Archive segments of the audit trail (see backend/src/service/retention.rs): events
-- older than the policy's online months, moved out of audit_events into a file under
-- DATA_DIR/audit-archive in the export format, with a signed checkpoint of exactly the
-- trail up to the segment's last event and the frontier of the Merkle tree before its
-- first, so that the file verifies offline on its own. The online chain continues from
-- the last segment's last event. Rows are only ever added. Keep in step with the other
-- flavour's 0008_audit_segments.sql.
CREATE TABLE audit_segments (
    first_seq  BIGINT  PRIMARY KEY,
    last_seq   BIGINT  NOT NULL UNIQUE,
    last_hash  TEXT    NOT NULL,
    first_at   TEXT    NOT NULL,
    last_at    TEXT    NOT NULL,
    events     BIGINT  NOT NULL,
    file       TEXT    NOT NULL,
    sha256     TEXT    NOT NULL,
    bytes      BIGINT  NOT NULL,
    created_at TEXT    NOT NULL
);
