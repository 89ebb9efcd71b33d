-- Signed checkpoints of the audit trail (see backend/src/service/checkpoints.rs): the
-- tree size, its RFC 6962 root (base64, as the checkpoint writes it) and the signed note
-- as issued. Kept so that an export can name the checkpoint that covers it; the copies
-- that prove anything are the ones kept outside the server.
CREATE TABLE audit_checkpoints (
    size       BIGINT  PRIMARY KEY,
    root       TEXT    NOT NULL,
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
