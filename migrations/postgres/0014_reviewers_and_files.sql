-- Reviewers an author or a release manager asked for on a patch ("needs my review").
CREATE TABLE review_requests (
    patch_id     BIGINT  NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    reviewer_id  BIGINT  NOT NULL REFERENCES users (id),
    requested_by BIGINT  NOT NULL REFERENCES users (id),
    requested_at TEXT    NOT NULL,
    PRIMARY KEY (patch_id, reviewer_id)
);
CREATE INDEX review_requests_by_reviewer ON review_requests (reviewer_id);

-- The files each revision changes: the dashboard searches their paths, and a reviewer's
-- "reviewed" mark on a file holds while the file's change (`change_sha256`, over its hunk
-- lines without line numbers) stays the same. Filled when a revision is stored; revisions
-- stored before this migration are filled by the service at start-up.
CREATE TABLE revision_files (
    revision_id   BIGINT  NOT NULL REFERENCES revisions (id) ON DELETE CASCADE,
    path          TEXT    NOT NULL,
    change_sha256 TEXT    NOT NULL,
    PRIMARY KEY (revision_id, path)
);

-- A reviewer's own "reviewed" marks, one per file of a patch: the change it was made on.
CREATE TABLE file_reviews (
    patch_id      BIGINT  NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    user_id       BIGINT  NOT NULL REFERENCES users (id),
    path          TEXT    NOT NULL,
    change_sha256 TEXT    NOT NULL,
    marked_at     TEXT    NOT NULL,
    PRIMARY KEY (patch_id, user_id, path)
);
