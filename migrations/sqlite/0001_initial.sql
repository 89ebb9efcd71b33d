-- Graftbench schema, SQLite flavour. Keep in step with ../postgres/0001_initial.sql:
-- same tables, columns and constraints; only the types differ.
-- Times are RFC 3339 UTC text with milliseconds (`2026-11-27T16:05:20.123Z`): identical
-- in both databases, sortable, and readable by an auditor looking at the raw tables.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    display_name  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    TEXT    NOT NULL
);

CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT    NOT NULL CHECK (role IN ('author', 'reviewer', 'security_officer',
                                             'release_manager', 'auditor', 'admin')),
    PRIMARY KEY (user_id, role)
);

-- Submitted diffs, content-addressed: a revision points at the SHA-256 of its bytes.
CREATE TABLE diff_blobs (
    sha256     TEXT    PRIMARY KEY CHECK (length(sha256) = 64),
    content    BLOB    NOT NULL,
    byte_len   INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE TABLE patches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT    NOT NULL,
    cvss_vector TEXT    NOT NULL DEFAULT '',
    author_id   INTEGER NOT NULL REFERENCES users (id),
    created_at  TEXT    NOT NULL
);

CREATE TABLE patch_cves (
    patch_id INTEGER NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    cve_id   TEXT    NOT NULL,
    PRIMARY KEY (patch_id, cve_id)
);
CREATE INDEX patch_cves_by_cve ON patch_cves (cve_id);

CREATE TABLE revisions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    patch_id     INTEGER NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL CHECK (number >= 1),
    diff_sha256  TEXT    NOT NULL REFERENCES diff_blobs (sha256),
    format       TEXT    NOT NULL CHECK (format IN ('unified', 'git-diff', 'mail')),
    submitted_by INTEGER NOT NULL REFERENCES users (id),
    created_at   TEXT    NOT NULL,
    UNIQUE (patch_id, number)
);
