//! Graftbench's analysis library.
//!
//! It knows nothing of HTTP, sessions or SQL: it takes bytes and returns plain data.
//! Today it holds the model of a kernel fix as submitted ([`patch`]): a unified diff or a
//! `git format-patch` mail, parsed strictly enough that whatever it accepts can later be
//! mapped line by line onto the target kernel's DWARF.
//!
//! ```
//! let fix = b"--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1 +1 @@\n-old\n+new\n";
//! let patch = analyzer::patch::parse(fix).unwrap();
//! assert_eq!(patch.files[0].path(), "fs/proc/cmdline.c");
//! assert_eq!(patch.stats().added, 1);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod dwarf;
pub mod impact;
pub mod patch;
pub mod pitfalls;
pub mod symbols;
