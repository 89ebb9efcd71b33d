//! Graftbench's domain: the words of the review workflow and its rules, as pure functions
//! over plain data. The backend loads facts, asks here, and stores the answer; the app
//! renders the same enums. Nothing here knows HTTP, SQL, sessions or an async runtime.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accounts;
pub mod audit;
pub mod eligibility;
pub mod ids;
pub mod refusal;
pub mod vocabulary;
pub mod workflow;

pub use ids::{PatchId, RevisionNumber, Sha256, ThreadId, UserId};
pub use refusal::Refusal;
pub use vocabulary::{Action, Category, Role, SignOffKind, State, Tier, Verdict};
