//! Line comments: threads anchored to a revision, a file, a side and a line.
//!
//! A comment may only be anchored where the revision's diff shows a line: the file must
//! be in the diff and the line must be one of its hunks' lines on that side, so a thread
//! never points at nothing. Replies take their thread's anchor; resolving and reopening
//! apply to the whole thread. Comments do not move a patch's state, but they are changes
//! to the review and are audited like the rest, under the same per-patch lock.

use crate::clock;
use crate::service::review::{self, ReviewError, MAX_COMMENT_CHARS};
use crate::store::audit;
use crate::store::comments::{self, Anchor, Resolution};
use crate::store::{self, Database, DbError, Tx};
use graftbench_app::model::{Action, SessionUser};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::workflow;
use graftbench_domain::PatchId;

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
    /// For a new thread: the kind of the pitfall on its line this notes was considered
    /// (`static-local`); the analyses must have found one there.
    pub pitfall: Option<String>,
    /// Keep it as a draft: seen by its author only until published (with a verdict, or
    /// on its own).
    pub draft: bool,
}

/// The most drafts one user may keep on one patch: each is a row and a line of the page.
pub const MAX_DRAFTS: i64 = 200;

/// What [`add_comment`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// A published comment: its id (a new thread's id is the thread's).
    Comment(i64),
    /// A draft: its id among the drafts.
    Draft(i64),
}

/// Starts the transaction of a change to a patch's comments: the patch's lock taken and
/// the rules asked whether `user` may comment on it now.
async fn begin_commenting(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    policy: &Policy,
) -> Result<Tx, ReviewError> {
    let mut tx = db.begin().await?;
    let state = review::lock_and_evaluate(&mut tx, patch_id, policy).await?;
    workflow::allowed(
        Action::Comment,
        user.id,
        &user.roles,
        state.author_id,
        state.state,
    )?;
    Ok(tx)
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

/// Whether a new thread's anchor is a line the revision's diff shows.
async fn check_anchor(
    db: &Database,
    patch_id: i64,
    request: &CommentRequest,
) -> Result<(), ReviewError> {
    if request.side != "old" && request.side != "new" {
        return Err(ReviewError::Invalid(format!(
            "side must be `old` or `new`, not `{}`",
            request.side.chars().take(20).collect::<String>()
        )));
    }
    let stored = db
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
                ReviewError::Db(DbError::Corrupt(format!(
                    "a stored revision no longer parses: {e}"
                )))
            })
    })
    .await
    .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("parse task failed: {e}"))))??;
    if !shown {
        return Err(ReviewError::Invalid(format!(
            "revision {} shows no {} line {} of `{}`: comment on a line the diff shows",
            request.revision,
            request.side,
            request.line,
            request.path.chars().take(200).collect::<String>()
        )));
    }
    if let Some(kind) = &request.pitfall {
        let found = crate::service::impact::pitfalls_of(db, patch_id, request.revision)
            .await
            .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("reading pitfalls: {e}"))))?;
        let there = found.iter().any(|p| {
            &p.kind == kind
                && p.path == request.path
                && p.anchor_line() == (request.side.as_str(), line)
        });
        if !there {
            return Err(ReviewError::Invalid(format!(
                "the analyses of revision {} found no `{}` pitfall on {} line {} of `{}`",
                request.revision,
                kind.chars().take(40).collect::<String>(),
                request.side,
                request.line,
                request.path.chars().take(200).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Adds a comment (a new thread, or a reply), or keeps it as the user's draft.
pub async fn add_comment(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    request: &CommentRequest,
    policy: &Policy,
) -> Result<Added, ReviewError> {
    let body = request.body.trim();
    if request.draft && request.pitfall.is_some() {
        return Err(ReviewError::Invalid(
            "marking a pitfall considered is published at once: it cannot be a draft".into(),
        ));
    }
    if request.thread.is_some() && request.pitfall.is_some() {
        return Err(ReviewError::Invalid(
            "a reply cannot mark a pitfall considered: start a thread on its line".into(),
        ));
    }
    if body.is_empty() {
        return Err(ReviewError::Invalid("the comment is empty".into()));
    }
    if body.chars().count() > MAX_COMMENT_CHARS {
        return Err(ReviewError::Invalid(format!(
            "the comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    if request.pitfall.is_some() {
        // Marking a pitfall considered is a review of someone else's fix (four eyes); and
        // the rules are asked before the analyses are read for it.
        let (facts, sign_offs) = db
            .review_facts(patch_id)
            .await?
            .ok_or_else(|| ReviewError::NotFound(format!("patch {patch_id}")))?;
        let state = review::evaluate(&facts, &sign_offs, policy).state;
        workflow::allowed(
            Action::Comment,
            user.id,
            &user.roles,
            facts.author_id,
            state,
        )?;
        if user.id == facts.author_id {
            return Err(ReviewError::Denied(
                graftbench_domain::workflow::Denied::OwnPatch(
                    "mark its pitfalls considered: a reviewer does",
                ),
            ));
        }
    }
    // A new thread's anchor is checked against the revision's diff here, outside the
    // write transaction: parsing a diff of megabytes while holding SQLite's write lock
    // would stall every other writer (sign-ins included). Revisions never change, so
    // the answer cannot go stale before the insert.
    let anchor = match request.thread {
        Some(_) => None,
        None => Some(check_anchor(db, patch_id, request).await),
    };
    let mut tx = begin_commenting(db, user, patch_id, policy).await?;
    let anchor = match request.thread {
        Some(thread) => comments::thread_anchor(&mut tx, patch_id, thread)
            .await?
            .ok_or_else(|| ReviewError::NotFound(format!("thread {thread} of patch {patch_id}")))?,
        None => {
            // Checked before the transaction (below); its verdict waits until the
            // rules have said whether this user may comment at all.
            if let Some(anchor) = anchor {
                anchor?;
            }
            Anchor {
                revision: request.revision,
                path: request.path.clone(),
                side: request.side.clone(),
                line: request.line,
            }
        }
    };
    if request.draft {
        if comments::count_drafts(&mut tx, patch_id, user.id.get()).await? >= MAX_DRAFTS {
            return Err(ReviewError::Conflict(format!(
                "you keep {MAX_DRAFTS} drafts on patch {patch_id} already: publish or discard some"
            )));
        }
        let id = comments::insert_draft(
            &mut tx,
            &comments::NewDraft {
                patch_id,
                thread: request.thread,
                anchor: &anchor,
                body,
                author_id: user.id.get(),
                at: &clock::now(),
            },
        )
        .await?;
        store::commit(tx).await?;
        return Ok(Added::Draft(id));
    }
    let id = comments::insert_comment(
        &mut tx,
        &comments::NewComment {
            patch_id,
            thread: request.thread,
            anchor: &anchor,
            body,
            author_id: user.id.get(),
            at: &clock::now(),
            pitfall: request.pitfall.as_deref(),
        },
    )
    .await?;
    audit::append(
        &mut tx,
        &user.username,
        AuditAction::CommentAdded,
        &AuditSubject::Patch(PatchId(patch_id)),
        &serde_json::json!({
            "comment": id,
            "thread": request.thread.unwrap_or(id),
            "revision": anchor.revision,
            "path": anchor.path,
            "side": anchor.side,
            "line": anchor.line,
            "body": body,
            "pitfall": request.pitfall,
        }),
    )
    .await?;
    store::commit(tx).await?;
    Ok(Added::Comment(id))
}

/// Publishes the user's drafts on a patch on their own (without a verdict); returns the
/// comments' ids. Having none is a conflict: the button is only shown with some.
pub async fn publish_drafts(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    policy: &Policy,
) -> Result<Vec<i64>, ReviewError> {
    let mut tx = begin_commenting(db, user, patch_id, policy).await?;
    let published = comments::publish_drafts(
        &mut tx,
        patch_id,
        (user.id.get(), &user.username),
        &clock::now(),
        None,
    )
    .await?;
    if published.is_empty() {
        return Err(ReviewError::Conflict(format!(
            "you have no drafts on patch {patch_id} to publish"
        )));
    }
    store::commit(tx).await?;
    Ok(published)
}

/// Discards one of the user's drafts. Anyone may discard their own drafts whatever the
/// patch's state: they were never part of the review.
pub async fn discard_draft(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    draft: i64,
) -> Result<(), ReviewError> {
    let mut tx = db.begin().await?;
    if !comments::delete_draft(&mut tx, patch_id, user.id.get(), draft).await? {
        return Err(ReviewError::NotFound(format!(
            "draft {draft} of yours on patch {patch_id}"
        )));
    }
    store::commit(tx).await?;
    Ok(())
}

/// Marks a thread resolved (or open again).
pub async fn resolve_thread(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    thread: i64,
    resolved: bool,
    policy: &Policy,
) -> Result<(), ReviewError> {
    let mut tx = begin_commenting(db, user, patch_id, policy).await?;
    let now = clock::now();
    match comments::set_resolved(&mut tx, patch_id, thread, resolved, user.id.get(), &now).await? {
        Resolution::Changed => {}
        Resolution::NoSuchThread => {
            return Err(ReviewError::NotFound(format!(
                "thread {thread} of patch {patch_id}"
            )))
        }
        Resolution::Unchanged => {
            return Err(ReviewError::Conflict(format!(
                "thread {thread} is already {}",
                if resolved { "resolved" } else { "open" }
            )))
        }
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
    store::commit(tx).await?;
    Ok(())
}
