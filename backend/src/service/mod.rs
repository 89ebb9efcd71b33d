//! Use cases: each opens its transaction, reads the facts from the store, asks the
//! domain's rules, writes through the store and appends the typed audit event in the
//! same transaction. The web layer and the command line call these, never SQL.

pub mod accounts;
pub mod analysis;
pub mod analysis_queue;
pub mod auth;
pub mod background;
pub mod checkpoints;
pub mod comments;
pub mod demo;
pub mod evidence;
pub mod export;
pub mod impact;
pub mod pages;
pub mod renders;
pub mod retention;
pub mod review;
pub mod reviewers;
pub mod sources;
pub mod submit;
pub mod targets;
pub mod tree;
pub mod worker;
