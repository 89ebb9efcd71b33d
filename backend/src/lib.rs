//! The Graftbench server and command-line tool.
//!
//! `main.rs` only parses arguments; everything it runs lives here so the integration
//! tests drive the same code in-process.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod clock;
pub mod comments;
pub mod db;
pub mod demo;
pub mod interdiff;
pub mod patches;
pub mod render;
pub mod review;
pub mod sessions;
pub mod submission;
pub mod web;
