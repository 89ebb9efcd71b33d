//! What reviewers keep per patch besides sign-offs and threads: the files each revision
//! changes (with a digest of each file's change), their own "reviewed" marks on those
//! files, and the reviewers someone asked for.

use super::{Database, DbError, Tx};
use graftbench_domain::UserId;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// One file a revision changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionFile {
    /// The path shown (the new one, or the old one for a deleted file).
    pub path: String,
    /// SHA-256 (hex) of the file's change without its line numbers: equal across
    /// revisions exactly when the file's change is the same.
    pub change_sha256: String,
}

/// A reviewer someone asked for on a patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRequest {
    /// The reviewer.
    pub reviewer_id: UserId,
    /// Their user name.
    pub username: String,
    /// Their display name.
    pub display_name: String,
    /// Who asked, by user name.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
}

/// Rows per `INSERT` of revision files: three parameters each, well under SQLite's and
/// PostgreSQL's limits on bound parameters.
const FILE_ROWS_PER_INSERT: usize = 300;

/// Records the files revision `revision_id` changes, a few hundred rows per statement.
pub async fn insert_revision_files(
    tx: &mut Tx,
    revision_id: i64,
    files: &[RevisionFile],
) -> Result<(), DbError> {
    for chunk in files.chunks(FILE_ROWS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO revision_files (revision_id, path, change_sha256) VALUES {}
             ON CONFLICT (revision_id, path) DO NOTHING",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for file in chunk {
            query = query
                .bind(revision_id)
                .bind(&file.path)
                .bind(&file.change_sha256);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Asks `reviewer` to review a patch; `false` when they were asked already.
pub async fn insert_review_request(
    tx: &mut Tx,
    patch_id: i64,
    reviewer: UserId,
    by: UserId,
    at: &str,
) -> Result<bool, DbError> {
    let inserted = sqlx::query(
        "INSERT INTO review_requests (patch_id, reviewer_id, requested_by, requested_at)
         VALUES ($1, $2, $3, $4) ON CONFLICT (patch_id, reviewer_id) DO NOTHING",
    )
    .bind(patch_id)
    .bind(reviewer.get())
    .bind(by.get())
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// Takes back the request to `reviewer`; `false` when there was none.
pub async fn delete_review_request(
    tx: &mut Tx,
    patch_id: i64,
    reviewer: UserId,
) -> Result<bool, DbError> {
    let deleted =
        sqlx::query("DELETE FROM review_requests WHERE patch_id = $1 AND reviewer_id = $2")
            .bind(patch_id)
            .bind(reviewer.get())
            .execute(&mut **tx)
            .await?
            .rows_affected();
    Ok(deleted > 0)
}

impl Database {
    /// Revisions stored before their files were recorded: id and diff SHA-256.
    pub async fn revisions_without_files(&self) -> Result<Vec<(i64, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT r.id, r.diff_sha256 FROM revisions r
             WHERE NOT EXISTS (SELECT 1 FROM revision_files f WHERE f.revision_id = r.id)
             ORDER BY r.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("diff_sha256")?)))
            .collect()
    }

    /// A diff's bytes by SHA-256.
    pub async fn diff_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, DbError> {
        let row = sqlx::query("SELECT content FROM diff_blobs WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| row.try_get("content"))
            .transpose()
            .map_err(Into::into)
    }

    /// Records the files of a revision stored before they were recorded.
    pub async fn record_revision_files(
        &self,
        revision_id: i64,
        files: &[RevisionFile],
    ) -> Result<(), DbError> {
        let mut tx = self.begin().await?;
        insert_revision_files(&mut tx, revision_id, files).await?;
        super::commit(tx).await
    }

    /// The paths each patch's current revision changes, by patch id.
    pub async fn current_paths(&self) -> Result<HashMap<i64, Vec<String>>, DbError> {
        let rows = sqlx::query(
            "SELECT r.patch_id, f.path FROM revision_files f
             JOIN revisions r ON r.id = f.revision_id
             WHERE r.number = (SELECT MAX(r2.number) FROM revisions r2
                               WHERE r2.patch_id = r.patch_id)",
        )
        .fetch_all(self.pool())
        .await?;
        let mut paths: HashMap<i64, Vec<String>> = HashMap::new();
        for row in rows {
            paths
                .entry(row.try_get("patch_id")?)
                .or_default()
                .push(row.try_get("path")?);
        }
        Ok(paths)
    }

    /// The files revision `number` of a patch changes.
    pub async fn revision_files(
        &self,
        patch_id: i64,
        number: i64,
    ) -> Result<Vec<RevisionFile>, DbError> {
        let rows = sqlx::query(
            "SELECT f.path, f.change_sha256 FROM revision_files f
             JOIN revisions r ON r.id = f.revision_id
             WHERE r.patch_id = $1 AND r.number = $2 ORDER BY f.path",
        )
        .bind(patch_id)
        .bind(number)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RevisionFile {
                    path: row.try_get("path")?,
                    change_sha256: row.try_get("change_sha256")?,
                })
            })
            .collect()
    }

    /// `user`'s "reviewed" marks on a patch: path to the change digest it was made on.
    pub async fn file_reviews(
        &self,
        patch_id: i64,
        user: UserId,
    ) -> Result<HashMap<String, String>, DbError> {
        let rows = sqlx::query(
            "SELECT path, change_sha256 FROM file_reviews WHERE patch_id = $1 AND user_id = $2",
        )
        .bind(patch_id)
        .bind(user.get())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("path")?, row.try_get("change_sha256")?)))
            .collect()
    }

    /// Marks a file reviewed by `user` as of the change `change_sha256` (replacing an
    /// earlier mark), or clears the mark when `change_sha256` is `None`.
    pub async fn set_file_review(
        &self,
        patch_id: i64,
        user: UserId,
        path: &str,
        change_sha256: Option<&str>,
        at: &str,
    ) -> Result<(), DbError> {
        match change_sha256 {
            Some(sha) => {
                sqlx::query(
                    "INSERT INTO file_reviews (patch_id, user_id, path, change_sha256, marked_at)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (patch_id, user_id, path)
                     DO UPDATE SET change_sha256 = excluded.change_sha256,
                                   marked_at = excluded.marked_at",
                )
                .bind(patch_id)
                .bind(user.get())
                .bind(path)
                .bind(sha)
                .bind(at)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query(
                    "DELETE FROM file_reviews WHERE patch_id = $1 AND user_id = $2 AND path = $3",
                )
                .bind(patch_id)
                .bind(user.get())
                .bind(path)
                .execute(self.pool())
                .await?;
            }
        }
        Ok(())
    }

    /// The reviewers asked for on a patch, in the order they were asked.
    pub async fn review_requests(&self, patch_id: i64) -> Result<Vec<ReviewRequest>, DbError> {
        let rows = sqlx::query(
            "SELECT q.reviewer_id, u.username, u.display_name, b.username AS requested_by,
                    q.requested_at
             FROM review_requests q
             JOIN users u ON u.id = q.reviewer_id
             JOIN users b ON b.id = q.requested_by
             WHERE q.patch_id = $1 ORDER BY q.requested_at, u.username",
        )
        .bind(patch_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ReviewRequest {
                    reviewer_id: UserId(row.try_get("reviewer_id")?),
                    username: row.try_get("username")?,
                    display_name: row.try_get("display_name")?,
                    requested_by: row.try_get("requested_by")?,
                    requested_at: row.try_get("requested_at")?,
                })
            })
            .collect()
    }

    /// The patches someone asked `user` to review.
    pub async fn patches_requested_from(&self, user: UserId) -> Result<HashSet<i64>, DbError> {
        let rows = sqlx::query("SELECT patch_id FROM review_requests WHERE reviewer_id = $1")
            .bind(user.get())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| row.try_get("patch_id").map_err(Into::into))
            .collect()
    }

    /// The patches that are for the target named `name`: those filed for it, and, while
    /// it is active, those filed for no target in particular (they are analysed for every
    /// active target). `None` when there is no such target.
    pub async fn patches_for_target(&self, name: &str) -> Result<Option<HashSet<i64>>, DbError> {
        let target = sqlx::query("SELECT id, retired_at FROM targets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        let Some(target) = target else {
            return Ok(None);
        };
        let id: i64 = target.try_get("id")?;
        let active = target.try_get::<Option<String>, _>("retired_at")?.is_none();
        let named = "EXISTS (SELECT 1 FROM patch_targets pt
                             WHERE pt.patch_id = p.id AND pt.target_id = $1)";
        let sql = if active {
            format!(
                "SELECT p.id FROM patches p WHERE {named}
                 OR NOT EXISTS (SELECT 1 FROM patch_targets pt WHERE pt.patch_id = p.id)"
            )
        } else {
            format!("SELECT p.id FROM patches p WHERE {named}")
        };
        let rows = sqlx::query(&sql).bind(id).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|row| row.try_get("id").map_err(Into::into))
            .collect::<Result<HashSet<i64>, DbError>>()
            .map(Some)
    }
}
