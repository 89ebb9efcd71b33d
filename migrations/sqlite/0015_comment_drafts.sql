-- A reviewer's comments not yet published (Gerrit's drafts): seen by their author only,
-- published together with a verdict or on their own, and then moved into `comments` and
-- the audit trail. A reply (`thread_id`) carries its thread's anchor. Not audited while a
-- draft: nobody else has read it, and a discarded draft never was part of the review.
CREATE TABLE comment_drafts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    patch_id   INTEGER NOT NULL REFERENCES patches (id) ON DELETE CASCADE,
    author_id  INTEGER NOT NULL REFERENCES users (id),
    thread_id  INTEGER REFERENCES comments (id),
    revision   INTEGER NOT NULL,
    file_path  TEXT    NOT NULL,
    side       TEXT    NOT NULL CHECK (side IN ('old', 'new')),
    line       INTEGER NOT NULL CHECK (line >= 1),
    body       TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    FOREIGN KEY (patch_id, revision) REFERENCES revisions (patch_id, number)
);
CREATE INDEX comment_drafts_by_author ON comment_drafts (patch_id, author_id);
