//! `graftbench policy`: the review policy in force.

use super::global::Global;
use anyhow::Result;
use clap::Subcommand;
use graftbench_domain::eligibility::LoadedPolicy;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Checks DATA_DIR/policy.toml and prints the policy in force, every key spelled out.
    Show,
}

pub fn run(global: &Global, command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Show => {
            let loaded = LoadedPolicy::load(&global.data_dir)?;
            println!("# {}", loaded.source());
            print!("{}", loaded.to_toml());
            Ok(())
        }
    }
}
