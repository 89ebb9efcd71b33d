-- Review and approval. Keep in step with the other flavour's 0003_review.sql.
--
-- A patch's phase is what people set (draft, open, rejected, withdrawn); its state is
-- computed from the phase, the sign-offs on the current revision, eligibility and the
-- policy, and stored so that lists can sort and filter by it (backend/src/review.rs
-- recomputes it in the transaction of every change that can move it).
ALTER TABLE patches ADD COLUMN phase TEXT NOT NULL DEFAULT 'open'
    CHECK (phase IN ('draft', 'open', 'rejected', 'withdrawn'));
ALTER TABLE patches ADD COLUMN state TEXT NOT NULL DEFAULT 'in_review'
    CHECK (state IN ('draft', 'in_review', 'changes_requested', 'approved', 'rejected',
                     'withdrawn'));
ALTER TABLE patches ADD COLUMN category TEXT NOT NULL DEFAULT 'vulnerability'
    CHECK (category IN ('vulnerability', 'data_corruption', 'severe_instability'));
ALTER TABLE patches ADD COLUMN tier TEXT NOT NULL DEFAULT 'scheduled'
    CHECK (tier IN ('incident', 'emergency', 'scheduled'));
-- When the problem was reported: the deadline runs from here.
ALTER TABLE patches ADD COLUMN reported_at TEXT NOT NULL DEFAULT '';
-- Functions the module replaces, once analysed (NULL: not yet).
ALTER TABLE patches ADD COLUMN functions_to_replace BIGINT;
-- Bumped by every change to the patch's review; the first write of each such
-- transaction, so that changes to one patch queue behind each other on both databases.
ALTER TABLE patches ADD COLUMN review_version BIGINT NOT NULL DEFAULT 0;
UPDATE patches SET reported_at = created_at WHERE reported_at = '';

-- Approvals, rejections and security officers' exception sign-offs. Each names the
-- revision by number and SHA-256; only those on the current revision count.
CREATE TABLE sign_offs (
    id              BIGSERIAL PRIMARY KEY,
    patch_id        BIGINT NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    revision        BIGINT NOT NULL,
    revision_sha256 TEXT NOT NULL CHECK (length(revision_sha256) = 64),
    user_id         BIGINT NOT NULL REFERENCES users (id),
    verdict         TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'exception')),
    comment         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    withdrawn_at    TEXT,
    FOREIGN KEY (patch_id, revision) REFERENCES revisions (patch_id, number)
);
-- One live sign-off of each kind per person and revision.
CREATE UNIQUE INDEX sign_offs_live ON sign_offs (patch_id, revision, user_id, verdict)
    WHERE withdrawn_at IS NULL;

-- Line comments. A thread is its first comment (thread_id NULL) and the replies that
-- point at it; the anchor (revision, file, side, line) is the first comment's.
CREATE TABLE comments (
    id          BIGSERIAL PRIMARY KEY,
    patch_id    BIGINT NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    thread_id   BIGINT REFERENCES comments (id),
    revision    BIGINT NOT NULL,
    file_path   TEXT NOT NULL,
    side        TEXT NOT NULL CHECK (side IN ('old', 'new')),
    line        BIGINT NOT NULL CHECK (line >= 1),
    body        TEXT NOT NULL,
    author_id   BIGINT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    resolved_by BIGINT REFERENCES users (id),
    FOREIGN KEY (patch_id, revision) REFERENCES revisions (patch_id, number)
);
CREATE INDEX comments_by_patch ON comments (patch_id, thread_id);
