//! Graftbench's livepatch module library.
//!
//! It knows nothing of HTTP, sessions or SQL: it takes bytes and paths and returns plain
//! data.
//!
//! - [`signature`]: signing a module exactly as the kernel's `sign-file` does, and
//!   verifying a signature with the kernel's own checks.
//! - [`keys`]: a signing key and its certificate.
//! - [`module`]: livepatch module sources (C replacement, Rust scaffolding laid out from
//!   the target's headers, Kbuild) and their build with the kernel's own kbuild.
//! - [`klp`]: livepatch relocations for symbols the kernel does not export.
//! - [`modinfo`]: what a module says about itself.
//!
//! Every fallible step answers with one error type, [`ModuleError`], whose variants name
//! the input at fault.
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

mod error;
pub mod keys;
pub mod klp;
pub mod modinfo;
pub mod module;
pub mod signature;

pub use error::ModuleError;
