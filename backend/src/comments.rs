//! Line comments: threads anchored to a revision, a file, a side and a line.
//!
//! A comment may only be anchored where the revision's diff shows a line: the file must
//! be in the diff and the line must be one of its hunks' lines on that side, so a thread
//! never points at nothing. Replies take their thread's anchor; resolving and reopening
//! apply to the whole thread. Comments do not move a patch's state, but they are changes
//! to the review and are audited like the rest, under the same per-patch lock.

use crate::audit;
use crate::clock;
use crate::db::Database;
use crate::review::{self, ReviewError, MAX_COMMENT_CHARS};
use graftbench_app::model::{Action, CommentView, SessionUser, ThreadView};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::workflow;
use graftbench_domain::PatchId;
use sqlx::Row;

/// A new comment as a client sends it.
#[derive(Debug, Clone, Default)]
pub struct CommentRequest {
    /// Reply to this thread (its first comment's id); the anchor fields are then ignored.
    pub thread: Option<i64>,
    /// Revision number.
    pub revision: i64,
    /// File path as the diff names it.
    pub path: String,
    /// `old` or `new`.
    pub side: String,
    /// Line number on that side.
    pub line: i64,
    /// The text.
    pub body: String,
}

/// Whether `diff` shows line `line` of `path` on `side`.
pub fn diff_has_line(diff: &analyzer::patch::Patch, path: &str, side: &str, line: u32) -> bool {
    diff.files.iter().any(|file| {
        let names = [file.old_path.as_deref(), file.new_path.as_deref()];
        names.contains(&Some(path))
            && file.hunks.iter().any(|hunk| {
                hunk.lines.iter().any(|l| {
                    let number = if side == "old" {
                        l.old_line
                    } else {
                        l.new_line
                    };
                    number == Some(line)
                })
            })
    })
}

impl Database {
    /// Whether a new thread's anchor is a line the revision's diff shows.
    async fn check_anchor(
        &self,
        patch_id: i64,
        request: &CommentRequest,
    ) -> Result<(), ReviewError> {
        if request.side != "old" && request.side != "new" {
            return Err(ReviewError::Invalid(format!(
                "side must be `old` or `new`, not `{}`",
                request.side.chars().take(20).collect::<String>()
            )));
        }
        let stored = self
            .revision(patch_id, request.revision)
            .await?
            .ok_or_else(|| {
                ReviewError::NotFound(format!("revision {} of patch {patch_id}", request.revision))
            })?;
        let (path, side) = (request.path.clone(), request.side.clone());
        let line = u32::try_from(request.line).unwrap_or(0);
        // Parsing is CPU work: off the async workers.
        let shown = tokio::task::spawn_blocking(move || {
            analyzer::patch::parse(&stored.diff)
                .map(|parsed| diff_has_line(&parsed, &path, &side, line))
                .map_err(|e| {
                    ReviewError::Db(crate::db::DbError::Corrupt(format!(
                        "a stored revision no longer parses: {e}"
                    )))
                })
        })
        .await
        .map_err(|e| {
            ReviewError::Db(crate::db::DbError::Corrupt(format!(
                "parse task failed: {e}"
            )))
        })??;
        if !shown {
            return Err(ReviewError::Invalid(format!(
                "revision {} shows no {} line {} of `{}`: comment on a line the diff shows",
                request.revision,
                request.side,
                request.line,
                request.path.chars().take(200).collect::<String>()
            )));
        }
        Ok(())
    }

    /// Adds a comment (a new thread, or a reply) and returns its id.
    pub async fn add_comment(
        &self,
        user: &SessionUser,
        patch_id: i64,
        request: &CommentRequest,
        policy: &Policy,
    ) -> Result<i64, ReviewError> {
        let body = request.body.trim();
        if body.is_empty() {
            return Err(ReviewError::Invalid("the comment is empty".into()));
        }
        if body.chars().count() > MAX_COMMENT_CHARS {
            return Err(ReviewError::Invalid(format!(
                "the comment is longer than {MAX_COMMENT_CHARS} characters"
            )));
        }
        // A new thread's anchor is checked against the revision's diff here, outside the
        // write transaction: parsing a diff of megabytes while holding SQLite's write lock
        // would stall every other writer (sign-ins included). Revisions never change, so
        // the answer cannot go stale before the insert.
        let anchor = match request.thread {
            Some(_) => None,
            None => Some(self.check_anchor(patch_id, request).await),
        };
        let mut tx = self.pool().begin().await?;
        let state = review::lock_and_evaluate(&mut tx, patch_id, policy).await?;
        workflow::allowed(
            Action::Comment,
            user.id,
            &user.roles,
            state.author_id,
            state.state,
        )?;
        let (revision, path, side, line) = match request.thread {
            Some(thread) => {
                let row = sqlx::query(
                    "SELECT revision, file_path, side, line FROM comments
                     WHERE id = $1 AND patch_id = $2 AND thread_id IS NULL",
                )
                .bind(thread)
                .bind(patch_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| {
                    ReviewError::NotFound(format!("thread {thread} of patch {patch_id}"))
                })?;
                (
                    row.try_get::<i64, _>("revision")?,
                    row.try_get::<String, _>("file_path")?,
                    row.try_get::<String, _>("side")?,
                    row.try_get::<i64, _>("line")?,
                )
            }
            None => {
                // Checked before the transaction (below); its verdict waits until the
                // rules have said whether this user may comment at all.
                if let Some(anchor) = anchor {
                    anchor?;
                }
                (
                    request.revision,
                    request.path.clone(),
                    request.side.clone(),
                    request.line,
                )
            }
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO comments (patch_id, thread_id, revision, file_path, side, line, body,
                 author_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(patch_id)
        .bind(request.thread)
        .bind(revision)
        .bind(&path)
        .bind(&side)
        .bind(line)
        .bind(body)
        .bind(user.id.get())
        .bind(clock::now())
        .fetch_one(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            &user.username,
            AuditAction::CommentAdded,
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({
                "comment": id,
                "thread": request.thread.unwrap_or(id),
                "revision": revision,
                "path": path,
                "side": side,
                "line": line,
                "body": body,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Marks a thread resolved (or open again).
    pub async fn resolve_thread(
        &self,
        user: &SessionUser,
        patch_id: i64,
        thread: i64,
        resolved: bool,
        policy: &Policy,
    ) -> Result<(), ReviewError> {
        let mut tx = self.pool().begin().await?;
        let state = review::lock_and_evaluate(&mut tx, patch_id, policy).await?;
        workflow::allowed(
            Action::Comment,
            user.id,
            &user.roles,
            state.author_id,
            state.state,
        )?;
        let now = clock::now();
        let changed = sqlx::query(
            "UPDATE comments SET resolved_at = $1, resolved_by = $2
             WHERE id = $3 AND patch_id = $4 AND thread_id IS NULL
               AND (resolved_at IS NULL) = $5",
        )
        .bind(resolved.then_some(now))
        .bind(resolved.then_some(user.id.get()))
        .bind(thread)
        .bind(patch_id)
        .bind(resolved)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 0 {
            let exists: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM comments WHERE id = $1 AND patch_id = $2 AND thread_id IS NULL",
            )
            .bind(thread)
            .bind(patch_id)
            .fetch_optional(&mut *tx)
            .await?;
            return Err(match exists {
                None => ReviewError::NotFound(format!("thread {thread} of patch {patch_id}")),
                Some(_) => ReviewError::Conflict(format!(
                    "thread {thread} is already {}",
                    if resolved { "resolved" } else { "open" }
                )),
            });
        }
        audit::append(
            &mut tx,
            &user.username,
            if resolved {
                AuditAction::CommentResolved
            } else {
                AuditAction::CommentReopened
            },
            &AuditSubject::Patch(PatchId(patch_id)),
            &serde_json::json!({ "thread": thread }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A patch's threads, by file, line and age.
    pub async fn threads(&self, patch_id: i64) -> Result<Vec<ThreadView>, ReviewError> {
        let rows = sqlx::query(
            "SELECT c.id, c.thread_id, c.revision, c.file_path, c.side, c.line, c.body,
                    c.created_at, c.resolved_at, a.display_name AS author,
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
