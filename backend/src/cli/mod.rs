//! The `graftbench` subcommands, one module each; `main.rs` parses and dispatches.

pub mod audit;
pub mod global;
pub mod kernel;
pub mod migrate;
pub mod module;
pub mod policy;
pub mod serve;
pub mod target;
pub mod user;
pub mod worker;
