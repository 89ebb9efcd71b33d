//! `graftbench audit`: checks the trail.

use super::global::Global;
use anyhow::{bail, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Walks the hash chain of every audit event; names the first one that was edited,
    /// deleted or moved.
    Verify,
}

pub async fn run(global: &Global, command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify => verify(global).await,
    }
}

async fn verify(global: &Global) -> Result<()> {
    let db = global.open_database().await?;
    let count = db.verify_audit().await??;
    println!("the audit trail is intact: {count} event(s)");
    let unexplained = db.unexplained_rows().await?;
    if unexplained.is_empty() {
        println!("every sign-off, revision, role and account state has its event");
        return Ok(());
    }
    for row in &unexplained {
        eprintln!("unexplained: {row}");
    }
    bail!(
        "{} row(s) in the database that no audit event explains: they were written around \
         Graftbench",
        unexplained.len()
    )
}
