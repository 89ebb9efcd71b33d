//! Review aids beside the sign-offs: the files each revision changes (the dashboard
//! searches their paths), each reviewer's own "reviewed" marks on files, and the
//! reviewers an author or a release manager asks for.

use crate::clock;
use crate::service::review::{self, ReviewError};
use crate::service::submit::revision_files;
use crate::store::audit;
use crate::store::files;
use crate::store::{self, Database, DbError};
use graftbench_app::model::{Action, FileMark, Role, SessionUser};
use graftbench_domain::audit::{AuditAction, AuditSubject};
use graftbench_domain::eligibility::Policy;
use graftbench_domain::{workflow, PatchId};

/// Records the files of revisions stored before they were recorded (databases older than
/// the `revision_files` table); returns how many revisions it recorded. Parsing runs off
/// the async workers.
pub async fn record_unrecorded_revisions(db: &Database) -> Result<usize, DbError> {
    let missing = db.revisions_without_files().await?;
    let mut recorded = 0;
    for (revision_id, sha256) in missing {
        let Some(diff) = db.diff_blob(&sha256).await? else {
            continue;
        };
        let parsed = tokio::task::spawn_blocking(move || {
            analyzer::patch::parse(&diff).map(|p| revision_files(&p))
        })
        .await
        .map_err(|e| DbError::Corrupt(format!("indexing revision {revision_id}: {e}")))?;
        match parsed {
            Ok(files) => {
                db.record_revision_files(revision_id, &files).await?;
                recorded += 1;
            }
            // Every stored diff parsed when it was accepted; one that no longer does is
            // left for the log rather than stopping the service.
            Err(e) => tracing::warn!(revision_id, error = %e, "stored diff does not parse"),
        }
    }
    Ok(recorded)
}

/// Whether `user` asks for (`true`) or stops asking for `reviewer`'s review of a patch.
pub async fn request_review(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    reviewer: &str,
    asked: bool,
    policy: &Policy,
) -> Result<(), ReviewError> {
    let reviewer = reviewer.trim();
    if reviewer.is_empty() {
        return Err(ReviewError::Invalid("name the reviewer to ask".into()));
    }
    let mut tx = db.begin().await?;
    let locked = review::lock_and_evaluate(&mut tx, patch_id, policy).await?;
    workflow::may_request_reviewers(user.id, &user.roles, locked.author_id, locked.state)?;
    let shown: String = reviewer.chars().take(64).collect();
    let account = db.user_by_name(reviewer).await?;
    let now = clock::now();
    let (changed, event, reviewer) = if asked {
        // One message for a name that is no account, a disabled one or one without the
        // role: the form lists the reviewers, and nothing else about accounts is told.
        let Some(account) = account.filter(|a| !a.disabled && a.user.has_role(Role::Reviewer))
        else {
            return Err(ReviewError::Invalid(format!(
                "`{shown}` is not an enabled reviewer"
            )));
        };
        let reviewer = account.user;
        if reviewer.id == locked.author_id {
            return Err(ReviewError::Invalid(format!(
                "{} wrote this patch and cannot review it",
                reviewer.username
            )));
        }
        if policy.role_grants_need_second_admin {
            // Four eyes on granted roles: a reviewer whose role a writer of this patch
            // granted could not approve it, so is not asked to.
            let independent =
                review::granted_independently(&mut tx, patch_id, reviewer.id, Action::Approve)
                    .await;
            if let Err(ReviewError::Denied(_)) = independent {
                return Err(ReviewError::Invalid(format!(
                    "{}'s reviewer role was granted by a writer of this patch: their approval \
                     would not count",
                    reviewer.username
                )));
            }
            independent?;
        }
        let added =
            files::insert_review_request(&mut tx, patch_id, reviewer.id, user.id, &now).await?;
        (added, AuditAction::ReviewRequested, reviewer.username)
    } else {
        // Whatever the account's state now: a request to someone disabled since can
        // still be taken back.
        let removed = match account {
            Some(account) => {
                files::delete_review_request(&mut tx, patch_id, account.user.id).await?
            }
            None => false,
        };
        (removed, AuditAction::ReviewRequestCancelled, shown.clone())
    };
    if !changed {
        return Err(ReviewError::Conflict(if asked {
            format!("{reviewer} was asked already")
        } else {
            format!("`{shown}` was not asked")
        }));
    }
    audit::append(
        &mut tx,
        &user.username,
        event,
        &AuditSubject::Patch(PatchId(patch_id)),
        &serde_json::json!({ "reviewer": reviewer }),
    )
    .await?;
    store::commit(tx).await?;
    Ok(())
}

/// Marks `path` of a patch's current revision reviewed by `user` (or clears the mark).
/// The mark holds while later revisions leave that file's change as it is. Anyone who may
/// read the patch may keep marks: they are a reading aid, not a sign-off, and are not
/// audited.
pub async fn mark_file(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    path: &str,
    reviewed: bool,
) -> Result<(), ReviewError> {
    let revisions = db.revisions(patch_id).await?;
    let Some(current) = revisions.last() else {
        return Err(ReviewError::NotFound(format!("patch {patch_id}")));
    };
    let files = db.revision_files(patch_id, current.number).await?;
    let Some(file) = files.iter().find(|f| f.path == path) else {
        return Err(ReviewError::Invalid(format!(
            "revision {} does not change `{}`",
            current.number,
            path.chars().take(200).collect::<String>()
        )));
    };
    let sha = reviewed.then_some(file.change_sha256.as_str());
    db.set_file_review(patch_id, user.id, path, sha, &clock::now())
        .await?;
    Ok(())
}

/// `user`'s marks on the files of revision `number` of a patch: which are reviewed as
/// they stand, and which were reviewed before their change changed.
pub async fn file_marks(
    db: &Database,
    user: &SessionUser,
    patch_id: i64,
    number: i64,
) -> Result<Vec<FileMark>, DbError> {
    let marks = db.file_reviews(patch_id, user.id).await?;
    if marks.is_empty() {
        return Ok(Vec::new()); // most readers mark nothing: no need for the files
    }
    let files = db.revision_files(patch_id, number).await?;
    Ok(files
        .into_iter()
        .filter_map(|file| {
            let marked = marks.get(&file.path)?;
            Some(FileMark {
                current: *marked == file.change_sha256,
                path: file.path,
            })
        })
        .collect())
}
