//! Line comments: threads anchored to a revision, a file, a side and a line, their
//! replies, and whether each thread is resolved.

use super::{Database, DbError, Tx};
use graftbench_app::model::{CommentView, DraftView, ThreadView};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::PatchId;
use sqlx::Row;

/// Where a comment sits: revision, file path, side (`old` or `new`) and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Revision number.
    pub revision: i64,
    /// File path as the diff names it.
    pub path: String,
    /// `old` or `new`.
    pub side: String,
    /// Line number on that side.
    pub line: i64,
}

/// The anchor of thread `thread` (its first comment's id) of a patch, if it is one.
pub async fn thread_anchor(
    tx: &mut Tx,
    patch_id: i64,
    thread: i64,
) -> Result<Option<Anchor>, DbError> {
    let Some(row) = sqlx::query(
        "SELECT revision, file_path, side, line FROM comments
         WHERE id = $1 AND patch_id = $2 AND thread_id IS NULL",
    )
    .bind(thread)
    .bind(patch_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some(Anchor {
        revision: row.try_get("revision")?,
        path: row.try_get("file_path")?,
        side: row.try_get("side")?,
        line: row.try_get("line")?,
    }))
}

/// A comment to store.
pub struct NewComment<'a> {
    /// The patch.
    pub patch_id: i64,
    /// The thread it replies to, if a reply.
    pub thread: Option<i64>,
    /// Where it is.
    pub anchor: &'a Anchor,
    /// The text.
    pub body: &'a str,
    /// Its author.
    pub author_id: i64,
    /// When.
    pub at: &'a str,
    /// The kind of pitfall it notes was considered, for such a thread.
    pub pitfall: Option<&'a str>,
}

/// Stores `comment`; returns its id.
pub async fn insert_comment(tx: &mut Tx, comment: &NewComment<'_>) -> Result<i64, DbError> {
    let NewComment {
        patch_id,
        thread,
        anchor,
        body,
        author_id,
        at,
        pitfall,
    } = *comment;
    Ok(sqlx::query_scalar(
        "INSERT INTO comments (patch_id, thread_id, revision, file_path, side, line, body,
             author_id, created_at, pitfall)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(patch_id)
    .bind(thread)
    .bind(anchor.revision)
    .bind(&anchor.path)
    .bind(&anchor.side)
    .bind(anchor.line)
    .bind(body)
    .bind(author_id)
    .bind(at)
    .bind(pitfall)
    .fetch_one(&mut **tx)
    .await?)
}

/// What marking a thread resolved (or open) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Changed.
    Changed,
    /// Already so.
    Unchanged,
    /// No such thread on this patch.
    NoSuchThread,
}

/// Marks thread `thread` of a patch resolved by `user` at `at`, or open again.
pub async fn set_resolved(
    tx: &mut Tx,
    patch_id: i64,
    thread: i64,
    resolved: bool,
    user_id: i64,
    at: &str,
) -> Result<Resolution, DbError> {
    let changed = sqlx::query(
        "UPDATE comments SET resolved_at = $1, resolved_by = $2
         WHERE id = $3 AND patch_id = $4 AND thread_id IS NULL
           AND (resolved_at IS NULL) = $5",
    )
    .bind(resolved.then_some(at))
    .bind(resolved.then_some(user_id))
    .bind(thread)
    .bind(patch_id)
    .bind(resolved)
    .execute(&mut **tx)
    .await?;
    if changed.rows_affected() > 0 {
        return Ok(Resolution::Changed);
    }
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM comments WHERE id = $1 AND patch_id = $2 AND thread_id IS NULL",
    )
    .bind(thread)
    .bind(patch_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match exists {
        Some(_) => Resolution::Unchanged,
        None => Resolution::NoSuchThread,
    })
}

impl Database {
    /// A patch's threads, by file, line and age.
    pub async fn threads(&self, patch_id: i64) -> Result<Vec<ThreadView>, DbError> {
        let rows = sqlx::query(
            "SELECT c.id, c.thread_id, c.revision, c.file_path, c.side, c.line, c.body,
                    c.created_at, c.resolved_at, c.pitfall, a.display_name AS author,
                    r.display_name AS resolver
             FROM comments c
             JOIN users a ON a.id = c.author_id
             LEFT JOIN users r ON r.id = c.resolved_by
             WHERE c.patch_id = $1
             ORDER BY c.id",
        )
        .bind(patch_id)
        .fetch_all(self.pool())
        .await?;
        let mut threads: Vec<ThreadView> = Vec::new();
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let comment = CommentView {
                id,
                author: row.try_get("author")?,
                body: row.try_get("body")?,
                created_at: row.try_get("created_at")?,
            };
            match row.try_get::<Option<i64>, _>("thread_id")? {
                None => {
                    let resolved_at: Option<String> = row.try_get("resolved_at")?;
                    let resolver: Option<String> = row.try_get("resolver")?;
                    threads.push(ThreadView {
                        id,
                        revision: row.try_get("revision")?,
                        path: row.try_get("file_path")?,
                        side: row.try_get("side")?,
                        line: u32::try_from(row.try_get::<i64, _>("line")?).unwrap_or(0),
                        comments: vec![comment],
                        resolved: resolved_at.map(|at| (resolver.unwrap_or_default(), at)),
                        pitfall: row.try_get("pitfall")?,
                        shown_at: None,
                    });
                }
                Some(thread) => {
                    if let Some(t) = threads.iter_mut().find(|t| t.id == thread) {
                        t.comments.push(comment);
                    }
                }
            }
        }
        threads.sort_by(|a, b| (&a.path, a.line, a.id).cmp(&(&b.path, b.line, b.id)));
        Ok(threads)
    }
}

/// A comment kept as a draft, to store.
pub struct NewDraft<'a> {
    /// The patch.
    pub patch_id: i64,
    /// The thread it replies to, if a reply.
    pub thread: Option<i64>,
    /// Where it is (a reply's is its thread's).
    pub anchor: &'a Anchor,
    /// The text.
    pub body: &'a str,
    /// Its author, the only one who sees it.
    pub author_id: i64,
    /// When.
    pub at: &'a str,
}

/// Stores `draft`; returns its id.
pub async fn insert_draft(tx: &mut Tx, draft: &NewDraft<'_>) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO comment_drafts (patch_id, author_id, thread_id, revision, file_path,
             side, line, body, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(draft.patch_id)
    .bind(draft.author_id)
    .bind(draft.thread)
    .bind(draft.anchor.revision)
    .bind(&draft.anchor.path)
    .bind(&draft.anchor.side)
    .bind(draft.anchor.line)
    .bind(draft.body)
    .bind(draft.at)
    .fetch_one(&mut **tx)
    .await?)
}

/// How many drafts `author_id` keeps on a patch.
pub async fn count_drafts(tx: &mut Tx, patch_id: i64, author_id: i64) -> Result<i64, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM comment_drafts WHERE patch_id = $1 AND author_id = $2",
    )
    .bind(patch_id)
    .bind(author_id)
    .fetch_one(&mut **tx)
    .await?)
}

/// Deletes draft `draft` of `author_id` on a patch; `false` when there is no such draft
/// of theirs (another user's draft is not found either).
pub async fn delete_draft(
    tx: &mut Tx,
    patch_id: i64,
    author_id: i64,
    draft: i64,
) -> Result<bool, DbError> {
    let deleted = sqlx::query(
        "DELETE FROM comment_drafts WHERE id = $1 AND patch_id = $2 AND author_id = $3",
    )
    .bind(draft)
    .bind(patch_id)
    .bind(author_id)
    .execute(&mut **tx)
    .await?;
    Ok(deleted.rows_affected() > 0)
}

/// A draft taken out of the drafts to be published.
#[derive(Debug, Clone)]
pub struct TakenDraft {
    /// Its id as a draft.
    pub draft: i64,
    /// The thread it replies to, if a reply.
    pub thread: Option<i64>,
    /// Where it is.
    pub anchor: Anchor,
    /// The text.
    pub body: String,
}

/// Removes and returns every draft `author_id` keeps on a patch, oldest first: the
/// caller publishes them in the same transaction. One statement deletes and returns
/// them, so a draft discarded by a transaction that commits meanwhile is either
/// published here or gone, never both (PostgreSQL reads committed rows between
/// statements).
pub async fn take_drafts(
    tx: &mut Tx,
    patch_id: i64,
    author_id: i64,
) -> Result<Vec<TakenDraft>, DbError> {
    let rows = sqlx::query(
        "DELETE FROM comment_drafts WHERE patch_id = $1 AND author_id = $2
         RETURNING id, thread_id, revision, file_path, side, line, body",
    )
    .bind(patch_id)
    .bind(author_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut taken = Vec::with_capacity(rows.len());
    for row in rows {
        taken.push(TakenDraft {
            draft: row.try_get("id")?,
            thread: row.try_get("thread_id")?,
            anchor: Anchor {
                revision: row.try_get("revision")?,
                path: row.try_get("file_path")?,
                side: row.try_get("side")?,
                line: row.try_get("line")?,
            },
            body: row.try_get("body")?,
        });
    }
    // RETURNING promises no order: published oldest first, as written.
    taken.sort_by_key(|d| d.draft);
    Ok(taken)
}

impl Database {
    /// The drafts `author_id` keeps on a patch, oldest first.
    pub async fn drafts(&self, patch_id: i64, author_id: i64) -> Result<Vec<DraftView>, DbError> {
        let rows = sqlx::query(
            "SELECT id, thread_id, revision, file_path, side, line, body, created_at
             FROM comment_drafts WHERE patch_id = $1 AND author_id = $2 ORDER BY id",
        )
        .bind(patch_id)
        .bind(author_id)
        .fetch_all(self.pool())
        .await?;
        let mut drafts = Vec::with_capacity(rows.len());
        for row in rows {
            drafts.push(DraftView {
                id: row.try_get("id")?,
                thread: row.try_get("thread_id")?,
                revision: row.try_get("revision")?,
                path: row.try_get("file_path")?,
                side: row.try_get("side")?,
                line: u32::try_from(row.try_get::<i64, _>("line")?).unwrap_or(0),
                body: row.try_get("body")?,
                created_at: row.try_get("created_at")?,
            });
        }
        Ok(drafts)
    }
}

/// Publishes every draft `author_id` (named `username` in the trail) keeps on a patch,
/// in the caller's transaction: each becomes a comment (a thread, or a reply to its
/// thread) and a `comment.added` event saying it was a draft and what it was published
/// with (`approve`, …, or nothing when published on its own). Returns the comments'
/// ids, oldest first.
pub async fn publish_drafts(
    tx: &mut Tx,
    patch_id: i64,
    author: (i64, &str),
    at: &str,
    with: Option<&str>,
) -> Result<Vec<i64>, DbError> {
    let (author_id, username) = author;
    let drafts = take_drafts(tx, patch_id, author_id).await?;
    let mut published = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let id = insert_comment(
            tx,
            &NewComment {
                patch_id,
                thread: draft.thread,
                anchor: &draft.anchor,
                body: &draft.body,
                author_id,
                at,
                pitfall: None,
            },
        )
        .await?;
        super::audit::append(
            tx,
            username,
            AuditAction::CommentAdded,
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({
                "comment": id,
                "thread": draft.thread.unwrap_or(id),
                "revision": draft.anchor.revision,
                "path": draft.anchor.path,
                "side": draft.anchor.side,
                "line": draft.anchor.line,
                "body": draft.body,
                "pitfall": null,
                "draft": draft.draft,
                "published_with": with,
            }),
        )
        .await?;
        published.push(id);
    }
    Ok(published)
}
