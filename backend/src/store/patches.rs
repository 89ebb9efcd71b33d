//! Patches, their CVE ids, revisions and the diff bytes they point at (stored once per
//! content: revisions are content-addressed by SHA-256).

use super::{Database, DbError, Tx};
use analyzer::patch::PatchFormat;
use graftbench_app::model::{PatchInfo, RevisionSummary};
use graftbench_domain::Sha256;
use sqlx::Row;
use std::collections::HashMap;

/// A patch's row as the list shows it.
#[derive(Debug, Clone)]
pub struct ListedPatch {
    /// Id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// CVE ids, in the order given.
    pub cves: Vec<String>,
    /// Author's display name.
    pub author: String,
    /// Author's id.
    pub author_id: i64,
    /// RFC 3339.
    pub created_at: String,
    /// How many revisions it has.
    pub revisions: i64,
}

/// A new patch's row.
pub struct NewPatch<'a> {
    /// Title.
    pub title: &'a str,
    /// CVSS vector, may be empty.
    pub cvss_vector: &'a str,
    /// Author.
    pub author_id: i64,
    /// RFC 3339.
    pub created_at: &'a str,
    /// `draft` or `open`.
    pub phase: &'a str,
    /// The state as first computed.
    pub state: &'a str,
    /// Category name.
    pub category: &'a str,
    /// Tier name.
    pub tier: &'a str,
    /// When the problem was reported (RFC 3339).
    pub reported_at: &'a str,
    /// CVE ids.
    pub cves: &'a [String],
}

/// Inserts a patch and its CVE ids; returns its id.
pub async fn insert_patch(tx: &mut Tx, patch: &NewPatch<'_>) -> Result<i64, DbError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO patches (title, cvss_vector, author_id, created_at, phase, state,
             category, tier, reported_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(patch.title)
    .bind(patch.cvss_vector)
    .bind(patch.author_id)
    .bind(patch.created_at)
    .bind(patch.phase)
    .bind(patch.state)
    .bind(patch.category)
    .bind(patch.tier)
    .bind(patch.reported_at)
    .fetch_one(&mut **tx)
    .await?;
    for (position, cve) in (0_i64..).zip(patch.cves) {
        sqlx::query("INSERT INTO patch_cves (patch_id, position, cve_id) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(position)
            .bind(cve)
            .execute(&mut **tx)
            .await?;
    }
    Ok(id)
}

fn format_name(format: PatchFormat) -> &'static str {
    match format {
        PatchFormat::Unified => "unified",
        PatchFormat::GitDiff => "git-diff",
        PatchFormat::Mail => "mail",
    }
}

/// A revision about to be stored, with its bytes.
pub struct NewRevision<'a> {
    /// The patch.
    pub patch_id: i64,
    /// Its number.
    pub number: i64,
    /// The diff as submitted.
    pub diff: &'a [u8],
    /// The diff's SHA-256.
    pub sha256: Sha256,
    /// How it was submitted.
    pub format: PatchFormat,
    /// Who uploaded it.
    pub submitted_by: i64,
    /// When (RFC 3339).
    pub at: &'a str,
    /// The files it changes.
    pub files: &'a [super::files::RevisionFile],
}

impl NewRevision<'_> {
    /// Stores the bytes (once per content: the same diff may serve several revisions) and
    /// the revision pointing at them.
    pub async fn insert(&self, tx: &mut Tx) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO diff_blobs (sha256, content, byte_len, created_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(self.sha256.to_string())
        .bind(self.diff)
        .bind(i64::try_from(self.diff.len()).unwrap_or(i64::MAX))
        .bind(self.at)
        .execute(&mut **tx)
        .await?;
        let revision_id: i64 = sqlx::query(
            "INSERT INTO revisions (patch_id, number, diff_sha256, format, submitted_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(self.patch_id)
        .bind(self.number)
        .bind(self.sha256.to_string())
        .bind(format_name(self.format))
        .bind(self.submitted_by)
        .bind(self.at)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        super::files::insert_revision_files(tx, revision_id, self.files).await
    }
}

/// One stored revision with its bytes.
#[derive(Debug, Clone)]
pub struct StoredRevision {
    /// Revision number.
    pub number: i64,
    /// SHA-256.
    pub sha256: String,
    /// Submission format.
    pub format: String,
    /// The bytes as submitted.
    pub diff: Vec<u8>,
}

impl Database {
    /// Every patch's CVE ids, in order (for the list).
    async fn cves_by_patch(&self) -> Result<HashMap<i64, Vec<String>>, DbError> {
        let rows =
            sqlx::query("SELECT patch_id, cve_id FROM patch_cves ORDER BY patch_id, position")
                .fetch_all(self.pool())
                .await?;
        let mut map: HashMap<i64, Vec<String>> = HashMap::new();
        for row in rows {
            map.entry(row.try_get("patch_id")?)
                .or_default()
                .push(row.try_get("cve_id")?);
        }
        Ok(map)
    }

    /// Every patch's list columns, newest first, with its CVE ids.
    pub async fn listed_patches(&self) -> Result<Vec<ListedPatch>, DbError> {
        let rows = sqlx::query(
            "SELECT p.id, p.title, u.display_name AS author, p.author_id, p.created_at,
                    (SELECT COUNT(*) FROM revisions r WHERE r.patch_id = p.id) AS revisions
             FROM patches p JOIN users u ON u.id = p.author_id
             ORDER BY p.id DESC",
        )
        .fetch_all(self.pool())
        .await?;
        let mut cves = self.cves_by_patch().await?;
        rows.into_iter()
            .map(|row| {
                let id: i64 = row.try_get("id")?;
                Ok(ListedPatch {
                    id,
                    title: row.try_get("title")?,
                    cves: cves.remove(&id).unwrap_or_default(),
                    author: row.try_get("author")?,
                    author_id: row.try_get("author_id")?,
                    created_at: row.try_get("created_at")?,
                    revisions: row.try_get("revisions")?,
                })
            })
            .collect()
    }

    /// One patch's metadata.
    pub async fn patch(&self, id: i64) -> Result<Option<PatchInfo>, DbError> {
        // One statement with the CVEs (a row per CVE): every patch page reads this.
        let rows = sqlx::query(
            "SELECT p.title, p.cvss_vector, u.display_name AS author, p.created_at, c.cve_id
             FROM patches p JOIN users u ON u.id = p.author_id
             LEFT JOIN patch_cves c ON c.patch_id = p.id
             WHERE p.id = $1
             ORDER BY c.position",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut cves = Vec::with_capacity(rows.len());
        for row in &rows {
            if let Some(cve) = row.try_get::<Option<String>, _>("cve_id")? {
                cves.push(cve);
            }
        }
        Ok(Some(PatchInfo {
            id,
            title: row.try_get("title")?,
            cves,
            cvss_vector: row.try_get("cvss_vector")?,
            author: row.try_get("author")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// Revision `number` of a patch (the latest when `None`): its number and hash.
    pub async fn revision_numbered(
        &self,
        patch_id: i64,
        number: Option<i64>,
    ) -> Result<Option<(i64, String)>, DbError> {
        let row = match number {
            Some(number) => {
                sqlx::query(
                    "SELECT number, diff_sha256 FROM revisions
                     WHERE patch_id = $1 AND number = $2",
                )
                .bind(patch_id)
                .bind(number)
                .fetch_optional(self.pool())
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT number, diff_sha256 FROM revisions
                     WHERE patch_id = $1 ORDER BY number DESC LIMIT 1",
                )
                .bind(patch_id)
                .fetch_optional(self.pool())
                .await?
            }
        };
        Ok(match row {
            Some(row) => Some((row.try_get("number")?, row.try_get("diff_sha256")?)),
            None => None,
        })
    }

    /// A patch's revisions, oldest first.
    pub async fn revisions(&self, patch_id: i64) -> Result<Vec<RevisionSummary>, DbError> {
        let rows = sqlx::query(
            "SELECT r.number, r.diff_sha256, u.display_name AS submitted_by, r.created_at
             FROM revisions r JOIN users u ON u.id = r.submitted_by
             WHERE r.patch_id = $1 ORDER BY r.number",
        )
        .bind(patch_id)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(RevisionSummary {
                    number: row.try_get("number")?,
                    sha256: row.try_get("diff_sha256")?,
                    submitted_by: row.try_get("submitted_by")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// One revision with its bytes.
    pub async fn revision(
        &self,
        patch_id: i64,
        number: i64,
    ) -> Result<Option<StoredRevision>, DbError> {
        let row = sqlx::query(
            "SELECT r.number, r.diff_sha256, r.format, b.content
             FROM revisions r JOIN diff_blobs b ON b.sha256 = r.diff_sha256
             WHERE r.patch_id = $1 AND r.number = $2",
        )
        .bind(patch_id)
        .bind(number)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let stored = StoredRevision {
            number: row.try_get("number")?,
            sha256: row.try_get("diff_sha256")?,
            format: row.try_get("format")?,
            diff: row.try_get("content")?,
        };
        // Hashing 5 MiB takes milliseconds of CPU: off the async workers.
        let stored = tokio::task::spawn_blocking(move || {
            check_content_hash(&stored.sha256, &stored.diff).map(|()| stored)
        })
        .await
        .map_err(|e| DbError::Corrupt(format!("hashing task failed: {e}")))??;
        Ok(Some(stored))
    }

    /// Rows per table, for tests that must show a refused request wrote nothing.
    pub async fn row_counts(&self) -> Result<Vec<(&'static str, i64)>, DbError> {
        let mut counts = Vec::new();
        for table in [
            "users",
            "user_roles",
            "diff_blobs",
            "patches",
            "patch_cves",
            "revisions",
            "sign_offs",
            "comments",
        ] {
            let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
                .fetch_one(self.pool())
                .await?;
            counts.push((table, n));
        }
        Ok(counts)
    }
}

/// Refuses bytes that do not hash to the SHA-256 they are stored under.
///
/// Revisions are content-addressed and sign-offs name the hash, so bytes changed in the
/// database would be shown and built under an approval given to other bytes.
pub fn check_content_hash(sha256: &str, content: &[u8]) -> Result<(), DbError> {
    use sha2::{Digest, Sha256};
    let actual = hex::encode(Sha256::digest(content));
    if actual == sha256 {
        return Ok(());
    }
    tracing::error!(
        target: "graftbench::security",
        stored = %sha256,
        actual = %actual,
        "ALERT: a stored diff does not match its SHA-256; refusing to serve it"
    );
    Err(DbError::Tampered {
        sha256: sha256.to_owned(),
        actual,
    })
}
