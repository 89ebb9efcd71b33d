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

/// A request about one file a revision changes, checked: the revision, the target's
/// source tree, the path asked for.
struct FileRequest {
    /// One of the [`SLOTS`], held from before the revision is read: requests waiting
    /// their turn hold no revision in memory.
    _slot: tokio::sync::SemaphorePermit<'static>,
    stored: crate::store::patches::StoredRevision,
    number: i64,
    root: String,
    name: String,
    path: String,
    /// The path as messages show it (cut to 200 characters).
    shown: String,
}

/// Checks a request for `path` (a file revision `number` of patch `patch_id` changes) in
/// target `target`'s tree: a kernel source file, an active target of the patch, one
/// registered with its source.
async fn file_request(
    db: &Database,
    patch_id: i64,
    number: i64,
    target: &str,
    path: &str,
) -> Result<FileRequest, ReviewError> {
    let shown: String = path.chars().take(200).collect();
    let slot = SLOTS
        .acquire()
        .await
        .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("source slots closed: {e}"))))?;
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
    Ok(FileRequest {
        _slot: slot,
        stored,
        number,
        root,
        name: target.name,
        path: path.to_owned(),
        shown,
    })
}

/// The file a request names, opened: the revision parsed, the file's diff, and the
/// target's copy of it (`None` when the fix creates it).
struct OpenFile {
    patch: Patch,
    file: analyzer::patch::FileDiff,
    old: Option<Vec<u8>>,
}

impl FileRequest {
    /// Runs `work` on the opened file off the async workers (in the request's slot):
    /// parsing, reading the file and placing hunks is CPU and disk work.
    async fn run<T: Send + 'static>(
        self,
        work: impl FnOnce(&FileRequest, OpenFile) -> Result<T, ReviewError> + Send + 'static,
    ) -> Result<T, ReviewError> {
        tokio::task::spawn_blocking(move || {
            let open = self.open()?;
            work(&self, open)
        })
        .await
        .map_err(|e| ReviewError::Db(DbError::Corrupt(format!("source task failed: {e}"))))?
    }

    fn open(&self) -> Result<OpenFile, ReviewError> {
        let (shown, name) = (&self.shown, &self.name);
        let patch = analyzer::patch::parse(&self.stored.diff).map_err(|e| {
            ReviewError::Db(DbError::Corrupt(format!(
                "a stored revision no longer parses: {e}"
            )))
        })?;
        let Some(file) = patch.files.iter().find(|f| {
            f.old_path.as_deref() == Some(self.path.as_str())
                || f.new_path.as_deref() == Some(self.path.as_str())
        }) else {
            return Err(ReviewError::NotFound(format!(
                "`{shown}` in revision {}'s diff",
                self.number
            )));
        };
        let tree = SourceDir::new(Path::new(&self.root)).map_err(|e| {
            tracing::error!(target = %name, error = %e, "a target's source tree is unreadable");
            ReviewError::Conflict(format!("the source tree of target `{name}` is unreadable"))
        })?;
        if file.hunks.len() > MAX_HUNKS {
            return Err(ReviewError::Invalid(format!(
                "`{shown}` has {} hunks; at most {MAX_HUNKS} are applied",
                file.hunks.len()
            )));
        }
        let old = match (file.change, file.old_path.as_deref()) {
            (FileChange::Added, _) | (_, None) => None,
            (_, Some(old_path)) => Some(
                tree.read(old_path)
                    .map_err(|e| self.unreadable(e))?
                    .ok_or_else(|| {
                        ReviewError::NotFound(format!(
                            "`{old_path}` in the source of target `{name}`"
                        ))
                    })?,
            ),
        };
        let file = file.clone();
        Ok(OpenFile { patch, file, old })
    }

    fn unreadable(&self, e: analyzer::source::SourceError) -> ReviewError {
        ReviewError::Conflict(format!("target `{}`: {e}", self.name))
    }

    /// Where the fix's hunks fall in the target's copy of the file, each checked to
    /// apply (a 409 naming the first that does not).
    fn placed(&self, open: &OpenFile) -> Result<analyzer::onto::Mapping, ReviewError> {
        let single = Patch {
            format: open.patch.format,
            mail: None,
            files: vec![open.file.clone()],
        };
        // The file is read once: the mapping reads it from memory.
        let read_once = OneFile {
            path: open.file.old_path.as_deref().unwrap_or_default(),
            bytes: open.old.as_deref(),
        };
        let mapping = map_onto(&single, &read_once).map_err(|e| self.unreadable(e))?;
        for hunk in &mapping.hunks {
            if !matches!(hunk.state, HunkState::Applied { .. } | HunkState::NewFile) {
                return Err(ReviewError::Conflict(format!(
                    "hunk {} of `{}` does not apply to target `{}` ({})",
                    hunk.hunk,
                    self.shown,
                    self.name,
                    match hunk.state {
                        HunkState::AlreadyApplied { .. } => "it is applied already",
                        HunkState::FileMissing => "the target has no such file",
                        _ => "its lines are not in the target's file",
                    }
                )));
            }
        }
        Ok(mapping)
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
    file_request(db, patch_id, number, target, path)
        .await?
        .run(move |request, open| {
            let shown = &request.shown;
            match side {
                FileSide::Old => open.old.clone().ok_or_else(|| {
                    ReviewError::NotFound(format!("an old side of `{shown}`: the fix creates it"))
                }),
                FileSide::New => {
                    if open.file.change == FileChange::Deleted {
                        return Err(ReviewError::NotFound(format!(
                            "a new side of `{shown}`: the fix deletes it"
                        )));
                    }
                    let mapping = request.placed(&open)?;
                    apply(open.old.as_deref().unwrap_or_default(), &mapping.patch).map_err(|why| {
                        ReviewError::Conflict(format!("`{shown}` on `{}`: {why}", request.name))
                    })
                }
            }
        })
        .await
}

pub use crate::around::MAX_CONTEXT_LINES;

use crate::around::ContextLine;

/// Up to `count` (at most [`MAX_CONTEXT_LINES`]) lines of target `target`'s copy of
/// `path` next to hunk `hunk` (from 0) of revision `number`: the ones just above it
/// (never reaching into the hunk before), or, when `below`, just below it (never into the
/// next hunk, nor past the file's end). Read where the hunk falls in that file, so a fix
/// written against another tree shows this kernel's lines around it.
#[allow(clippy::too_many_arguments)]
pub async fn context(
    db: &Database,
    patch_id: i64,
    number: i64,
    target: &str,
    path: &str,
    hunk: usize,
    below: bool,
    count: usize,
) -> Result<Vec<ContextLine>, ReviewError> {
    let count = count.min(MAX_CONTEXT_LINES);
    file_request(db, patch_id, number, target, path)
        .await?
        .run(move |request, open| {
            if open.file.hunks.get(hunk).is_none() {
                return Err(ReviewError::NotFound(format!(
                    "hunk {} of `{}`",
                    hunk.saturating_add(1),
                    request.shown
                )));
            }
            let Some(old) = open.old.as_deref() else {
                return Ok(Vec::new()); // a new file has nothing around its lines
            };
            let mapping = request.placed(&open)?;
            let offset = match mapping.hunks.get(hunk).map(|h| &h.state) {
                Some(HunkState::Applied { offset, .. }) => *offset,
                _ => 0,
            };
            Ok(around(&open.file.hunks, hunk, offset, old, below, count))
        })
        .await
}

/// Up to `count` lines of `old` (a target's copy of a file) next to hunk `hunk` of
/// `hunks` (the file's hunks in the diff), which falls `offset` lines lower in `old` than
/// the diff says: above it, never into the hunk before, or `below` it, never into the
/// next nor past the file's end; numbered as the diff counts.
fn around(
    hunks: &[analyzer::patch::Hunk],
    hunk: usize,
    offset: i64,
    old: &[u8],
    below: bool,
    count: usize,
) -> Vec<ContextLine> {
    let lines: Vec<&[u8]> = old
        .strip_suffix(b"\n")
        .unwrap_or(old)
        .split(|&b| b == b'\n')
        .collect();
    crate::around::around(hunks, hunk, below, count, |old_line| {
        // The target's line for this diff line, where the hunk fell.
        let index = usize::try_from(i64::from(old_line) + offset - 1).ok()?;
        lines
            .get(index)
            .map(|line| String::from_utf8_lossy(line).into_owned())
    })
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

    /// (old, new, text) of each line [`around`] gives.
    fn lines_around(
        fix: &Patch,
        hunk: usize,
        offset: i64,
        file: &[u8],
        below: bool,
        count: usize,
    ) -> Vec<(u32, u32, String)> {
        around(&fix.files[0].hunks, hunk, offset, file, below, count)
            .into_iter()
            .map(|l| (l.old, l.new, l.text))
            .collect()
    }

    #[test]
    fn the_lines_around_a_hunk_stop_at_the_next_hunk_and_the_files_ends() {
        let file = b"1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        // A replacement at 3-4 (one line more on the new side) and an insertion after 8.
        let fix = patch(
            "--- a/f\n+++ b/f\n@@ -3,2 +3,3 @@\n 3\n-4\n+four\n+4.5\n@@ -8,0 +10,1 @@\n+8.5\n",
        );
        let text = |n: u32| n.to_string();
        // Above the first: from line 1, at most `count`, nearest the hunk.
        assert_eq!(
            lines_around(&fix, 0, 0, file, false, 1),
            vec![(2, 2, text(2))]
        );
        assert_eq!(
            lines_around(&fix, 0, 0, file, false, 500),
            vec![(1, 1, text(1)), (2, 2, text(2))]
        );
        // Below the first: lines 5 to 8 (the insertion follows line 8), new numbers one
        // further on.
        assert_eq!(
            lines_around(&fix, 0, 0, file, true, 500),
            vec![
                (5, 6, text(5)),
                (6, 7, text(6)),
                (7, 8, text(7)),
                (8, 9, text(8))
            ]
        );
        // Above the insertion: back to the first hunk's end, and no further.
        assert_eq!(lines_around(&fix, 1, 0, file, false, 500).len(), 4);
        // Below it: to the file's end.
        assert_eq!(
            lines_around(&fix, 1, 0, file, true, 500),
            vec![(9, 11, text(9)), (10, 12, text(10))]
        );
        // Nothing asked, nothing given; no such hunk, nothing.
        assert!(lines_around(&fix, 0, 0, file, true, 0).is_empty());
        assert!(lines_around(&fix, 2, 0, file, true, 5).is_empty());
    }

    #[test]
    fn the_lines_around_a_hunk_are_the_targets_where_the_hunk_falls_there() {
        let fix = patch("--- a/f\n+++ b/f\n@@ -3,1 +3,1 @@\n-c\n+C\n");
        // The target has two lines more at the top: the hunk falls at its line 5, and the
        // lines above are its 3 and 4, numbered 1 and 2 as the diff counts.
        let lower = b"x\ny\na\nb\nc\nd\n";
        assert_eq!(
            lines_around(&fix, 0, 2, lower, false, 500),
            vec![(1, 1, "a".into()), (2, 2, "b".into())]
        );
        assert_eq!(
            lines_around(&fix, 0, 2, lower, true, 500),
            vec![(4, 4, "d".into())]
        );
        // One line fewer: the hunk falls at its line 2; the diff's line 1 is not there.
        let higher = b"b\nc\nd\n";
        assert_eq!(
            lines_around(&fix, 0, -1, higher, false, 500),
            vec![(2, 2, "b".into())]
        );
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
