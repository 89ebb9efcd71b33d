//! Appends N audit events to a data directory's database, for `bench/audit.sh`: a
//! correctly chained trail (each event's hash computed as the server computes it), with
//! times spread evenly over the MONTHS months before now, so that the retention policy
//! has something to archive. Inserts in transactions of 10,000 rows; the server's tree
//! and checkpoints are not touched (the first `audit checkpoint` grows the tree).
//!
//! Usage: cargo run --release --example seed_audit -- DATABASE_URL N [MONTHS]

use anyhow::{bail, Context, Result};
use graftbench_domain::audit::EventFields;
use sqlx::Row;

/// Rows per multi-row INSERT (SQLite allows 32,766 bound values; 8 a row).
const ROWS_PER_INSERT: usize = 500;
/// Rows per transaction.
const ROWS_PER_TX: i64 = 10_000;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, count, rest @ ..] = args.as_slice() else {
        bail!("usage: seed_audit DATABASE_URL N [MONTHS]");
    };
    let count: i64 = count.parse().context("N is a number of events")?;
    let months: i64 = match rest.first() {
        Some(m) => m.parse().context("MONTHS is a number")?,
        None => 14,
    };
    let db = graftbench::store::Database::connect(url).await?;
    let pool = db.pool();
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(pool)
        .await?;
    let (mut seq, mut prev): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let now = time::OffsetDateTime::now_utc();
    let start = now - time::Duration::days(months * 30);
    let step = (now - start) / (count.max(1) as f64);
    let actors = ["alice", "bob", "carol", "dave", "erin"];
    let actions = [
        "session.signed_in",
        "patch.submitted",
        "sign_off.approve",
        "comment.added",
        "patch.state_changed",
    ];
    let mut written = 0i64;
    while written < count {
        let in_tx = (count - written).min(ROWS_PER_TX);
        let mut tx = pool.begin().await?;
        let mut rows = Vec::with_capacity(ROWS_PER_INSERT);
        for i in 0..in_tx {
            seq += 1;
            let n = written + i;
            let at = graftbench::clock::format(start + step * (n as f64));
            let actor = actors[(n % 5) as usize].to_owned();
            let action = actions[(n % 5) as usize].to_owned();
            let subject = format!("patch:{}", 1 + n % 997);
            let details = format!(r#"{{"revision":1,"n":{n},"comment":"seeded for the bench"}}"#);
            let hash = EventFields {
                seq,
                at: &at,
                actor: &actor,
                action: &action,
                subject: &subject,
                details: &details,
                prev_hash: &prev,
            }
            .hash();
            rows.push((seq, at, actor, action, subject, details, prev, hash.clone()));
            prev = hash;
            if rows.len() == ROWS_PER_INSERT || i == in_tx - 1 {
                let placeholders: Vec<String> = (0..rows.len())
                    .map(|r| {
                        let b = r * 8;
                        format!(
                            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                            b + 1,
                            b + 2,
                            b + 3,
                            b + 4,
                            b + 5,
                            b + 6,
                            b + 7,
                            b + 8
                        )
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO audit_events (seq, at, actor, action, subject, details, \
                     prev_hash, hash) VALUES {}",
                    placeholders.join(", ")
                );
                let mut query = sqlx::query(&sql);
                for row in rows.drain(..) {
                    query = query
                        .bind(row.0)
                        .bind(row.1)
                        .bind(row.2)
                        .bind(row.3)
                        .bind(row.4)
                        .bind(row.5)
                        .bind(row.6)
                        .bind(row.7);
                }
                query.execute(&mut *tx).await?;
            }
        }
        let last_at = graftbench::clock::format(start + step * ((written + in_tx - 1) as f64));
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, at = $3 WHERE id = 1")
            .bind(seq)
            .bind(&prev)
            .bind(&last_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        written += in_tx;
    }
    println!("{seq}");
    Ok(())
}
