//! Graftbench's end-to-end tests, as one test binary: each module was a binary of its own,
//! and each linked the whole server (one link instead of five, and the test support
//! compiled once).
//!
//! - [`http`]: the HTTP API and the forms, on SQLite and PostgreSQL.
//! - [`review`]: every role times every state times every action.
//! - [`security`]: one test per finding of the security review.
//! - [`browser`]: headless Chromium walking the pages.
//! - [`jobs`]: the job queue's claims, leases, retries and cancellation.
//! - [`targets`]: kernel targets, analyses as jobs, a worker process killed mid-job.
//! - [`kernel`]: a generated, built and signed module loaded into the real Debian kernel
//!   under QEMU.

mod browser;
mod http;
mod jobs;
mod kernel;
mod review;
mod security;
mod targets;
