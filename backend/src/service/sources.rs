//! A revision's files as a target's own source tree has them, before and after the fix:
//! the "old" and "new" downloads of each changed file. The old side is the target's
//! file; the new side is that file with the fix's hunks applied where
//! [`analyzer::onto::map_onto`] places them (GNU `patch`'s search, fuzz included), so a
//! fix written against another tree shows what it makes of this kernel's file. Only the
//! files the revision's diff names are read, through [`SourceDir`], which refuses any
//! path outside the tree.

use crate::service::review::ReviewError;
use crate::store::{Database, DbError};
use analyzer::onto::{map_onto, HunkState};
use analyzer::patch::{FileChange, LineKind, Patch};
use analyzer::source::{SourceDir, SourceTree};
use std::path::Path;

/// Which side of a changed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileSide {
    /// As the target has it.
    Old,
    /// With the fix applied.
    New,
}

impl FileSide {
    /// `old` or `new`.
    pub fn parse(text: &str) -> Option<FileSide> {
        match text {
            "old" => Some(FileSide::Old),
            "new" => Some(FileSide::New),
            _ => None,
        }
    }
}

/// The bytes of `path` (a file revision `number` of patch `patch_id` changes, by either
/// of its names) on `side`, as target `target` (by name) has it in its source tree.
pub async fn revision_file(
    db: &Database,
    patch_id: i64,
    number: i64,
    target: &str,
    path: &str,
    side: FileSide,
) -> Result<Vec<u8>, ReviewError> {
    let shown: String = path.chars().take(200).collect();
    let stored = db
        .revision(patch_id, number)
        .await?
        .ok_or_else(|| ReviewError::NotFound(format!("revision {number} of patch {patch_id}")))?;
    if !served(path) {
        return Err(ReviewError::NotFound(format!(
            "`{shown}` among the files served: kernel source only (C, headers, assembly, \
             Rust, linker scripts, device trees, Kconfig, Makefiles), no hidden files or keys"
        )));
    }
    // Only the active targets this patch is analysed for.
    let mut tx = db.begin().await?;
    let target = crate::store::targets::targets_of_patch_in(&mut tx, patch_id)
        .await?
        .into_iter()
        .find(|t| t.name == target && t.retired_at.is_none())
        .ok_or_else(|| {
            ReviewError::NotFound(format!(
                "active target `{}` of patch {patch_id}",
                target.chars().take(64).collect::<String>()
            ))
        })?;
    drop(tx);
    let Some(root) = target.source_dir.clone() else {
        return Err(ReviewError::NotFound(format!(
            "the source of target `{}` (it was registered without a source tree)",
            target.name
        )));
    };
    let path = path.to_owned();
    let name = target.name.clone();
    // Parsing, reading the file and placing the hunks is CPU and disk work: off the
    // async workers, and at most SLOTS at a time however many ask.
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("source slots closed: {e}"))))?;
    tokio::task::spawn_blocking(move || {
        let patch = analyzer::patch::parse(&stored.diff).map_err(|e| {
            ReviewError::Db(DbError::Corrupt(format!(
                "a stored revision no longer parses: {e}"
            )))
        })?;
        let Some(file) = patch.files.iter().find(|f| {
            f.old_path.as_deref() == Some(path.as_str())
                || f.new_path.as_deref() == Some(path.as_str())
        }) else {
            return Err(ReviewError::NotFound(format!(
                "`{shown}` in revision {number}'s diff"
            )));
        };
        let tree = SourceDir::new(Path::new(&root)).map_err(|e| {
            tracing::error!(target = %name, error = %e, "a target's source tree is unreadable");
            ReviewError::Conflict(format!("the source tree of target `{name}` is unreadable"))
        })?;
        let unreadable = |e: analyzer::source::SourceError| {
            ReviewError::Conflict(format!("target `{name}`: {e}"))
        };
        if file.hunks.len() > MAX_HUNKS {
            return Err(ReviewError::Invalid(format!(
                "`{shown}` has {} hunks; at most {MAX_HUNKS} are applied",
                file.hunks.len()
            )));
        }
        let old = match (file.change, file.old_path.as_deref()) {
            (FileChange::Added, _) | (_, None) => None,
            (_, Some(old_path)) => {
                Some(tree.read(old_path).map_err(unreadable)?.ok_or_else(|| {
                    ReviewError::NotFound(format!("`{old_path}` in the source of target `{name}`"))
                })?)
            }
        };
        match side {
            FileSide::Old => old.ok_or_else(|| {
                ReviewError::NotFound(format!("an old side of `{shown}`: the fix creates it"))
            }),
            FileSide::New => {
                if file.change == FileChange::Deleted {
                    return Err(ReviewError::NotFound(format!(
                        "a new side of `{shown}`: the fix deletes it"
                    )));
                }
                let single = Patch {
                    format: patch.format,
                    mail: None,
                    files: vec![file.clone()],
                };
                // The file is read once: the mapping reads it from memory.
                let read_once = OneFile {
                    path: file.old_path.as_deref().unwrap_or_default(),
                    bytes: old.as_deref(),
                };
                let mapping = map_onto(&single, &read_once).map_err(unreadable)?;
                for hunk in &mapping.hunks {
                    if !matches!(hunk.state, HunkState::Applied { .. } | HunkState::NewFile) {
                        return Err(ReviewError::Conflict(format!(
                            "hunk {} of `{shown}` does not apply to target `{name}` ({})",
                            hunk.hunk,
                            match hunk.state {
                                HunkState::AlreadyApplied { .. } => "it is applied already",
                                HunkState::FileMissing => "the target has no such file",
                                _ => "its lines are not in the target's file",
                            }
                        )));
                    }
                }
                apply(old.as_deref().unwrap_or_default(), &mapping.patch)
                    .map_err(|why| ReviewError::Conflict(format!("`{shown}` on `{name}`: {why}")))
            }
        }
    })
    .await
    .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("source task failed: {e}"))))?
}

/// How many requests for files may read and patch at once: each holds a file of up to
/// the source limit and a parsed diff of up to 5 MiB.
static SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// The most hunks of one file applied (the analyses' limit for a whole fix).
const MAX_HUNKS: usize = crate::service::analysis::MAX_HUNKS;

/// Whether `path` is a kind of file this serves: kernel source text, never a hidden file
/// (`.config`, `.git/`) or anything that could be a key or certificate (`certs/` holds
/// the module signing key of an in-tree build).
fn served(path: &str) -> bool {
    let components: Vec<&str> = path.split('/').collect();
    if components
        .iter()
        .any(|c| c.is_empty() || c.starts_with('.'))
        || components.first() == Some(&"certs")
    {
        return false;
    }
    let name = components.last().copied().unwrap_or_default();
    let source_name = ["Kconfig", "Makefile", "Kbuild"]
        .iter()
        .any(|prefix| name.starts_with(prefix));
    let extension = name.rsplit_once('.').map(|(_, ext)| ext);
    source_name
        || matches!(
            extension,
            Some(
                "c" | "h" | "S" | "s" | "rs" | "lds" | "dts" | "dtsi" | "y" | "l" | "asn1" | "tbl"
            )
        )
}

/// The one file being patched, already read, as a tree for [`map_onto`].
struct OneFile<'a> {
    path: &'a str,
    bytes: Option<&'a [u8]>,
}

impl SourceTree for OneFile<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, analyzer::source::SourceError> {
        Ok(self.bytes.filter(|_| path == self.path).map(<[u8]>::to_vec))
    }
}

/// `original` with the hunks of `patch`'s one file applied; their old-side numbers are
/// `original`'s lines. A line that is not what the hunk expects is an error (the
/// mapping placed it, so it should not happen).
fn apply(original: &[u8], patch: &Patch) -> Result<Vec<u8>, String> {
    let lines: Vec<&[u8]> = if original.is_empty() {
        Vec::new()
    } else {
        original
            .strip_suffix(b"\n")
            .unwrap_or(original)
            .split(|&b| b == b'\n')
            .collect()
    };
    let mut out: Vec<u8> = Vec::with_capacity(original.len() + 1024);
    let mut next = 0_usize; // index of the next original line not yet copied
    let mut ends_with_newline = original.is_empty() || original.ends_with(b"\n");
    let hunks = patch.files.iter().flat_map(|f| &f.hunks);
    for hunk in hunks {
        // Where the hunk's old side starts, as an index; a pure insertion goes after
        // its stated line.
        let start = hunk
            .lines
            .iter()
            .find_map(|l| l.old_line.filter(|_| l.kind != LineKind::Added))
            .map_or(hunk.old_start as usize, |line| {
                (line as usize).saturating_sub(1)
            });
        if start < next || start > lines.len() {
            return Err(format!("hunk at line {} is out of order", hunk.old_start));
        }
        for line in &lines[next..start] {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        next = start;
        for l in &hunk.lines {
            match l.kind {
                LineKind::Context | LineKind::Removed => {
                    let Some(have) = lines.get(next) else {
                        return Err(format!("the file ends before line {}", next + 1));
                    };
                    if *have != l.text.as_bytes() {
                        return Err(format!("line {} is not what the fix expects", next + 1));
                    }
                    if l.kind == LineKind::Context {
                        out.extend_from_slice(have);
                        out.push(b'\n');
                    }
                    next += 1;
                }
                LineKind::Added => {
                    out.extend_from_slice(l.text.as_bytes());
                    out.push(b'\n');
                }
            }
        }
        if next == lines.len() {
            // The hunk reaches the end: the file ends as its last line says.
            if let Some(last) = hunk
                .lines
                .iter()
                .rev()
                .find(|l| l.kind != LineKind::Removed)
            {
                ends_with_newline = !last.no_newline_at_eof;
            }
        }
    }
    for line in &lines[next..] {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if !ends_with_newline && out.ends_with(b"\n") {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(text: &str) -> Patch {
        analyzer::patch::parse(text.as_bytes()).expect("a valid test patch")
    }

    #[test]
    fn hunks_apply_in_place_and_keep_the_rest_of_the_file() {
        let original = b"1\n2\n3\n4\n5\n6\n7\n8\n";
        let fix =
            patch("--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n 2\n-3\n+three\n@@ -7,0 +8,1 @@\n+7.5\n");
        assert_eq!(
            String::from_utf8(apply(original, &fix).unwrap()).unwrap(),
            "1\n2\nthree\n4\n5\n6\n7\n7.5\n8\n"
        );
    }

    #[test]
    fn a_line_that_is_not_what_the_hunk_expects_is_an_error() {
        let fix = patch("--- a/f\n+++ b/f\n@@ -1,1 +1,1 @@\n-x\n+y\n");
        assert!(apply(b"z\n", &fix).is_err());
        assert!(apply(b"", &fix).is_err());
    }

    #[test]
    fn only_kernel_source_files_are_served() {
        for path in [
            "fs/proc/cmdline.c",
            "include/linux/mm.h",
            "arch/x86/entry/entry_64.S",
            "net/Kconfig",
            "drivers/net/Makefile",
            "arch/x86/kernel/vmlinux.lds",
        ] {
            assert!(served(path), "{path}");
        }
        for path in [
            "certs/signing_key.pem",
            "certs/x.c",
            ".config",
            ".git/config",
            "scripts/.hidden.c",
            "vmlinux",
            "a//b.c",
            "debian/rules",
            "key.pem",
        ] {
            assert!(!served(path), "{path}");
        }
    }

    #[test]
    fn a_new_file_is_its_added_lines() {
        let fix = patch(
            "--- /dev/null\n+++ b/n\n@@ -0,0 +1,2 @@\n+a\n+b\n\\ No newline at end of file\n",
        );
        assert_eq!(apply(b"", &fix).unwrap(), b"a\nb");
    }
}
