//! `graftbench migrate`: the schema, and on PostgreSQL the runtime role's grants.

use super::global::Global;
use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct MigrateArgs {
    /// The PostgreSQL role `serve` connects as (not a superuser).
    #[arg(long)]
    grant_runtime_role: Option<String>,
}

pub async fn run(global: &Global, args: MigrateArgs) -> Result<()> {
    let db = global.open_database().await?;
    graftbench::store::sessions::DbSessionStore::open(&db).await?;
    println!("database is up to date");
    if let Some(role) = args.grant_runtime_role {
        db.grant_runtime_role(&role).await?;
        println!("granted `{role}` rows to read and write; audit events only to read and append");
    }
    Ok(())
}
