//! Graftbench's analysis library.
//!
//! It knows nothing of HTTP, sessions or SQL: it takes bytes and returns plain data.
//!
//! - [`patch`]: a kernel fix as submitted (a unified diff or one `git format-patch` mail),
//!   parsed strictly enough that what it accepts maps line by line onto the target.
//! - [`symbols`]: an object's functions from its symbol table and ftrace table: clones,
//!   sections, ftrace entries, `old_sympos`.
//! - [`dwarf`]: its debug information as plain tables: subprograms, inline sites, call
//!   sites, the line table.
//! - [`index`]: those tables reduced to what the analysis needs, per function, for
//!   vmlinux and its modules, with the on-disk form that makes repeated analysis fast.
//! - [`impact`]: from a fix and those tables to the functions a live patch must replace,
//!   with the reasons; [`pitfalls`]: what in the fix needs a reviewer's care.
//! - [`source`]: the target kernel's own source tree (read safely, never outside its
//!   root), its identifier index, and the build's configuration (`.config` or
//!   `autoconf.h`), with which its `#if`s are resolved.
//! - [`onto`]: where each hunk of a fix written for another tree falls in the target's
//!   source, found as GNU `patch` finds it (offset, fuzz, already applied).
//! - [`heading`]: without the source, each hunk's `@@ ... @@ function(` heading checked
//!   against where the build's debug information has that function.
//! - [`expand`]: what the line table cannot see: a changed macro or enumerator followed
//!   to the code using it, changed types and data; with the configuration, leaving out
//!   the code the build does not compile.
//! - [`placement`]: where the compiler put one function (clones, inlined copies, callers).
//! - [`image`]: what a kernel image says about itself (build-id, release, compiler).
//! - [`cache`]: a kernel build's index file: up to date or rebuilt, written atomically,
//!   with progress, for the command line and server jobs alike.
//!
//! ```
//! let fix = b"--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1 +1 @@\n-old\n+new\n";
//! let patch = analyzer::patch::parse(fix).unwrap();
//! assert_eq!(patch.files[0].path(), "fs/proc/cmdline.c");
//! assert_eq!(patch.stats().added, 1);
//! ```
// One `unsafe` block in all: mapping input files read-only ([`cache::map`]).
#![deny(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]

pub mod cache;
pub mod dwarf;
pub mod expand;
pub mod heading;
pub mod image;
pub mod impact;
pub mod index;
pub mod onto;
pub mod patch;
pub mod pitfalls;
pub mod placement;
pub mod source;
pub mod symbols;
