//! The audit trail's Merkle tree as stored: tlog's stored hashes by index, and how many
//! events it holds. [`crate::service::tree`] computes; this only reads and appends.

use super::{Database, DbError};
use graftbench_domain::audit::AuditEvent;
use sqlx::Row;
use std::collections::HashMap;

/// Placeholders per statement: well under SQLite's and PostgreSQL's bind limits.
const BATCH: usize = 400;

fn to_i64(n: u64) -> Result<i64, DbError> {
    i64::try_from(n).map_err(|_| DbError::Corrupt(format!("tree index {n} out of range")))
}

impl Database {
    /// How many events the stored tree holds.
    pub async fn tree_leaves(&self) -> Result<u64, DbError> {
        let leaves: i64 = sqlx::query_scalar("SELECT leaves FROM audit_tree_head WHERE id = 1")
            .fetch_one(self.pool())
            .await?;
        u64::try_from(leaves).map_err(|_| DbError::Corrupt(format!("tree of {leaves} leaves")))
    }

    /// The stored hashes at `indexes` (those that exist).
    pub async fn tree_hashes(&self, indexes: &[u64]) -> Result<HashMap<u64, [u8; 32]>, DbError> {
        let mut found = HashMap::with_capacity(indexes.len());
        for chunk in indexes.chunks(BATCH) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT idx, hash FROM audit_tree WHERE idx IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for &index in chunk {
                query = query.bind(to_i64(index)?);
            }
            for row in query.fetch_all(self.pool()).await? {
                let index: i64 = row.try_get("idx")?;
                let bytes: Vec<u8> = row.try_get("hash")?;
                let hash = <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| DbError::Corrupt(format!("tree hash {index} is not 32 bytes")))?;
                found.insert(index as u64, hash);
            }
        }
        Ok(found)
    }

    /// Up to `limit` events after event `after` (by sequence number), oldest first.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<AuditEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash
             FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(super::audit::event_from_row).collect()
    }

    /// Grows the stored tree from `from` leaves to `to` with `hashes` (index, hash), unless
    /// someone else grew it first (then `false`, and nothing is written).
    pub async fn grow_tree(
        &self,
        from: u64,
        to: u64,
        hashes: &[(u64, [u8; 32])],
    ) -> Result<bool, DbError> {
        let mut tx = self.pool().begin().await?;
        let moved =
            sqlx::query("UPDATE audit_tree_head SET leaves = $1 WHERE id = 1 AND leaves = $2")
                .bind(to_i64(to)?)
                .bind(to_i64(from)?)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if moved != 1 {
            return Ok(false);
        }
        for chunk in hashes.chunks(BATCH / 2) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "INSERT INTO audit_tree (idx, hash) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (index, hash) in chunk {
                query = query.bind(to_i64(*index)?).bind(hash.to_vec());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
