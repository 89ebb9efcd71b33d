//! The Graftbench server and command-line tool.
//!
//! `main.rs` only parses arguments; everything it runs lives here so the integration
//! tests drive the same code in-process.
#![forbid(unsafe_code)]

pub mod around;
pub mod clock;
pub mod impact_graph;
pub mod interdiff;
pub mod render;
pub mod service;
pub mod store;
pub mod web;
