//! What every subcommand shares: the data directory, the database, standard output.

use anyhow::{Context, Result};
use clap::Args;
use graftbench::store::{self, Database};
use std::path::{Path, PathBuf};

/// Options every subcommand takes.
#[derive(Args)]
pub struct Global {
    /// Directory for the SQLite database and other state (created mode 0700).
    #[arg(
        long,
        global = true,
        env = "GRAFTBENCH_DATA_DIR",
        default_value = "graftbench-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL; defaults to a SQLite file in the data directory.
    /// `postgres://user@host/db` uses PostgreSQL.
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

impl Global {
    /// The database: `--database-url`, else the data directory's SQLite file.
    pub async fn open_database(&self) -> Result<Database> {
        let url = match &self.database_url {
            Some(url) => url.clone(),
            None => {
                self.create_data_dir()?;
                store::sqlite_url(&self.data_dir.join("graftbench.db"))
            }
        };
        Database::connect(&url)
            .await
            .with_context(|| format!("opening the database {}", store::redact_url(&url)))
    }

    /// Creates the data directory (mode 0700) when missing; warns when others can read it.
    pub fn create_data_dir(&self) -> Result<()> {
        create_private_dir(&self.data_dir)
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    } else if dir.metadata()?.permissions().mode() & 0o077 != 0 {
        tracing::warn!(dir = %dir.display(), "the data directory is readable by other users; chmod 700 it");
    }
    Ok(())
}

/// Writes to standard output; a reader that went away (`| head`) ends the output quietly.
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to standard output")?),
    }
}
