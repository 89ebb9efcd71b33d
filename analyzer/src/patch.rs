//! The model of a submitted fix: a unified diff (`diff -u`, `git diff`) or one
//! `git format-patch` mail, and a strict parser for it.
//!
//! The parser is deliberately unforgiving where a lenient one would hide a problem from
//! a reviewer: hunk line counts must match the hunk header exactly, paths must stay inside
//! the tree, and binary patches are refused. Every error names the input line (1-based).
//!
//! The input is untrusted and may be as large as a request body, so every step is linear
//! in the input: no loop compares a line with itself piece by piece, and the pieces a
//! file header is made of (a `diff --git` line, a path) are bounded by
//! [`MAX_GIT_HEADER_BYTES`] and [`MAX_PATH_BYTES`].
//!
//! Paths are taken the way `patch -p1` and `git apply` take them: the first component
//! (`a/`, `b/`) is removed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The longest piece of an offending input line quoted back in an error message.
const QUOTE_LIMIT: usize = 80;

/// The longest path accepted, in bytes: Linux's `PATH_MAX`. It bounds every name as
/// written in the input after C-unquoting, so with its `a/`/`b/` prefix when it has one,
/// and the tree path left after removing that prefix.
pub const MAX_PATH_BYTES: usize = 4096;

/// The longest `diff --git` line accepted, in bytes, without its line end: two names of
/// [`MAX_PATH_BYTES`], `diff --git `, the space between them, their quotes and some slack.
///
/// A name that git C-quotes with many escapes (`é` is written `\303\251`, eight bytes
/// for two) meets this bound before [`MAX_PATH_BYTES`]; kernel paths are far from both.
pub const MAX_GIT_HEADER_BYTES: usize = 2 * MAX_PATH_BYTES + 64;

/// A parsed fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// How the fix was submitted.
    pub format: PatchFormat,
    /// The mail header and commit message, for `git format-patch` input.
    pub mail: Option<MailHeader>,
    /// The files the fix changes, in input order.
    pub files: Vec<FileDiff>,
}

/// The submission format a [`Patch`] was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchFormat {
    /// A plain unified diff (`diff -u`).
    Unified,
    /// A `git diff` (with `diff --git` headers) without mail headers.
    GitDiff,
    /// One `git format-patch` mail.
    Mail,
}

/// The header fields of a `git format-patch` mail that a reviewer wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailHeader {
    /// The commit id from the mbox `From <sha> Mon Sep 17 00:00:00 2001` line.
    pub commit: Option<String>,
    /// `From:`, as written (RFC 2047 encoded words are left as they are).
    pub from: Option<String>,
    /// `Date:`.
    pub date: Option<String>,
    /// `Subject:` without the `[PATCH ...]` tag.
    pub subject: Option<String>,
    /// The commit message body, up to the `---` line.
    pub message: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FileChange {
    /// Changed in place.
    Modified,
    /// Created by the fix.
    Added,
    /// Deleted by the fix.
    Deleted,
    /// Renamed (possibly with changes); `similarity` in percent when git gave it.
    Renamed {
        /// git's similarity index.
        similarity: Option<u8>,
    },
    /// Copied from another file.
    Copied {
        /// git's similarity index.
        similarity: Option<u8>,
    },
}

/// The changes to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDiff {
    /// Path before the change; `None` for a new file.
    pub old_path: Option<String>,
    /// Path after the change; `None` for a deleted file.
    pub new_path: Option<String>,
    /// What kind of change this is.
    pub change: FileChange,
    /// `old mode` / `deleted file mode`, as an octal string.
    pub old_mode: Option<String>,
    /// `new mode` / `new file mode`, as an octal string.
    pub new_mode: Option<String>,
    /// The hunks, in file order.
    pub hunks: Vec<Hunk>,
    /// The original file's blob id as git's `index` line abbreviates it (`a1b2c3d`), when
    /// the diff has one: two diffs with different ids for a path patch different versions
    /// of that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_blob: Option<String>,
}

impl FileDiff {
    /// Whether this diff and `other` name the same original blob, as far as their
    /// `index` lines tell: `false` only when both have one and the ids differ (an
    /// abbreviated id matches the longer id it begins).
    pub fn same_original_as(&self, other: &FileDiff) -> bool {
        match (&self.old_blob, &other.old_blob) {
            (Some(a), Some(b)) => a.starts_with(b.as_str()) || b.starts_with(a.as_str()),
            _ => true,
        }
    }

    /// The path to show for this file: the new path, or the old one for a deletion.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or_default()
    }
}

/// One hunk: a run of context, removed and added lines.
///
/// [`parse`] guarantees `old_start + old_lines` and `new_start + new_lines` fit in a
/// `u32`, so the line numbers of a hunk never wrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hunk {
    /// First line of the hunk in the old file (0 for an empty old side).
    pub old_start: u32,
    /// Number of old-side lines (context + removed).
    pub old_lines: u32,
    /// First line of the hunk in the new file.
    pub new_start: u32,
    /// Number of new-side lines (context + added).
    pub new_lines: u32,
    /// The text after the closing `@@`: the enclosing function, as git found it.
    pub section: String,
    /// Line of the `@@` header in the input (1-based).
    pub input_line: usize,
    /// The lines of the hunk.
    pub lines: Vec<HunkLine>,
}

/// The kind of one line in a hunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineKind {
    /// Unchanged (` `).
    Context,
    /// Only on the old side (`-`).
    Removed,
    /// Only on the new side (`+`).
    Added,
}

/// One line in a hunk, with its line numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkLine {
    /// Context, removed or added.
    pub kind: LineKind,
    /// Line number in the old file (context and removed lines).
    pub old_line: Option<u32>,
    /// Line number in the new file (context and added lines).
    pub new_line: Option<u32>,
    /// The text without the prefix character and without the newline. Bytes that are
    /// not UTF-8 are replaced with U+FFFD: the submission itself is kept byte for byte
    /// by the caller, this is its readable model.
    pub text: String,
    /// Followed by `\ No newline at end of file`.
    pub no_newline_at_eof: bool,
}

/// Counts over a whole patch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchStats {
    /// Files changed.
    pub files: usize,
    /// Lines added.
    pub added: usize,
    /// Lines removed.
    pub removed: usize,
}

impl Patch {
    /// Files, added and removed line counts.
    pub fn stats(&self) -> PatchStats {
        let mut stats = PatchStats {
            files: self.files.len(),
            ..PatchStats::default()
        };
        for line in self
            .files
            .iter()
            .flat_map(|f| &f.hunks)
            .flat_map(|h| &h.lines)
        {
            match line.kind {
                LineKind::Added => stats.added += 1,
                LineKind::Removed => stats.removed += 1,
                LineKind::Context => {}
            }
        }
        stats
    }
}

/// Why a submission is not an acceptable diff.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Nothing but white space.
    #[error("the diff is empty")]
    Empty,
    /// No file header anywhere.
    #[error("not a diff: no `diff --git` or `---`/`+++` file header found")]
    NotADiff,
    /// More than one `git format-patch` mail in one submission.
    #[error(
        "{count} patches in one submission: submit one fix as one diff \
         (squash the series, or `git diff BASE..FIX`)"
    )]
    Series {
        /// Number of `From <sha>` mail separators found.
        count: usize,
    },
    /// A binary patch.
    #[error(
        "line {line}: binary patch for `{path}`: binary changes cannot be reviewed or live-patched"
    )]
    Binary {
        /// Input line.
        line: usize,
        /// The file, as far as it could be named.
        path: String,
    },
    /// A path that is absolute, climbs out of the tree, or holds characters a path in the
    /// kernel tree never has.
    #[error("line {line}: path `{}` {problem}", escape_controls(.path))]
    UnsafePath {
        /// Input line.
        line: usize,
        /// The path as written (at most [`MAX_PATH_BYTES`]). It may hold the control
        /// character the error is about: the message shows it escaped.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// A path that is not UTF-8, or an unterminated quoted path.
    #[error("line {line}: unreadable path in `{text}`")]
    BadPath {
        /// Input line.
        line: usize,
        /// The offending line, shortened.
        text: String,
    },
    /// A path longer than [`MAX_PATH_BYTES`].
    #[error(
        "line {line}: a path of {len} bytes is longer than the limit of {limit} bytes: `{text}`"
    )]
    PathTooLong {
        /// Input line.
        line: usize,
        /// Length of the path as written, after unquoting, in bytes.
        len: usize,
        /// [`MAX_PATH_BYTES`].
        limit: usize,
        /// The start of the path, shortened and with control characters escaped.
        text: String,
    },
    /// A `diff --git` line longer than [`MAX_GIT_HEADER_BYTES`].
    #[error(
        "line {line}: a `diff --git` line of {len} bytes is longer than the limit of {limit} bytes: `{text}`"
    )]
    GitHeaderTooLong {
        /// Input line.
        line: usize,
        /// Length of the line in bytes, without its line end.
        len: usize,
        /// [`MAX_GIT_HEADER_BYTES`].
        limit: usize,
        /// The start of the line, shortened and with control characters escaped.
        text: String,
    },
    /// A `diff --git` file with no hunks that changes nothing else either: no rename or
    /// copy, no mode change, not a new or deleted (empty) file.
    #[error(
        "line {line}: `diff --git` for `{path}` changes nothing: \
         no hunks, no mode change, no rename or copy, not a new or deleted file"
    )]
    EmptyFileDiff {
        /// Input line of the `diff --git` header.
        line: usize,
        /// The file.
        path: String,
    },
    /// A `@@` line that does not parse.
    #[error("line {line}: malformed hunk header `{text}`: expected `@@ -START[,COUNT] +START[,COUNT] @@`")]
    MalformedHunkHeader {
        /// Input line.
        line: usize,
        /// The offending line, shortened.
        text: String,
    },
    /// A `@@` line whose start and count reach past the last line number a `u32` holds.
    #[error(
        "line {line}: hunk header `{text}` reaches past line {}: START + COUNT must be at most that",
        u32::MAX
    )]
    HunkRangeOverflow {
        /// Input line.
        line: usize,
        /// The offending line, shortened.
        text: String,
    },
    /// A hunk with fewer lines than its header announces.
    #[error(
        "line {line}: hunk starting at line {hunk_line} ends early: \
         {old_missing} old and {new_missing} new lines missing"
    )]
    TruncatedHunk {
        /// Input line where the hunk stopped.
        line: usize,
        /// Input line of the `@@` header.
        hunk_line: usize,
        /// Old-side lines announced but not found.
        old_missing: u32,
        /// New-side lines announced but not found.
        new_missing: u32,
    },
    /// A `@@` line that is not preceded by a file header.
    #[error("line {line}: hunk header outside a file diff (no `---`/`+++` header before it)")]
    HunkOutsideFile {
        /// Input line.
        line: usize,
    },
    /// A `---`/`+++` header pair that is not followed by a hunk.
    #[error("line {line}: file header for `{path}` is not followed by a hunk")]
    MissingHunks {
        /// Input line of the `+++` header.
        line: usize,
        /// The file.
        path: String,
    },
}

/// What is wrong with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// Starts with `/`.
    Absolute,
    /// Has a `..` component.
    ParentComponent,
    /// Nothing left after removing the `a/` prefix.
    Empty,
    /// Has a backslash: not a separator on Linux, and a sign of a path from another system
    /// or of a quoting mistake.
    Backslash,
    /// Has a control character (C0, DEL or C1), which no kernel path has and which could
    /// rewrite what a reviewer's terminal or page shows.
    ControlCharacter(char),
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Absolute => "is absolute: paths must be relative to the kernel tree",
            PathProblem::ParentComponent => {
                "has a `..` component: paths must stay inside the kernel tree"
            }
            PathProblem::Empty => "is empty",
            PathProblem::Backslash => {
                "has a backslash: paths in the kernel tree use `/` and have no `\\`"
            }
            PathProblem::ControlCharacter(c) => {
                // The character itself is never written out: it is why the path is refused.
                return write!(
                    f,
                    "has the control character U+{:04X}: paths in the kernel tree have none",
                    u32::from(*c)
                );
            }
        })
    }
}

/// Parses a unified diff or one `git format-patch` mail.
///
/// Input lines may end in `\n` or `\r\n`; a `\r` before the newline is kept as part of the
/// line text only inside hunks, where it is content.
pub fn parse(input: &[u8]) -> Result<Patch, PatchError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(PatchError::Empty);
    }
    let lines = split_lines(input);
    let mut parser = Parser {
        lines: &lines,
        pos: 0,
    };
    let mail = parser.mail_header()?;
    let mut files = Vec::new();
    let mut saw_git_header = false;
    while let Some(line) = parser.peek() {
        if let Some(rest) = line.strip_prefix(b"diff --git ") {
            saw_git_header = true;
            files.push(parser.git_file(rest)?);
        } else if line.starts_with(b"--- ")
            && parser
                .peek_at(1)
                .is_some_and(|next| next.starts_with(b"+++ "))
        {
            files.push(parser.plain_file()?);
        } else if line.starts_with(b"@@") {
            return Err(PatchError::HunkOutsideFile {
                line: parser.line_no(),
            });
        } else if is_binary_notice(line) {
            return Err(PatchError::Binary {
                line: parser.line_no(),
                path: binary_notice_path(line),
            });
        } else {
            // Preamble, diffstat, `Index:` lines, the mail signature: not part of any file.
            parser.pos += 1;
        }
    }
    if files.is_empty() {
        return Err(PatchError::NotADiff);
    }
    let format = match (&mail, saw_git_header) {
        (Some(_), _) => PatchFormat::Mail,
        (None, true) => PatchFormat::GitDiff,
        (None, false) => PatchFormat::Unified,
    };
    Ok(Patch {
        format,
        mail,
        files,
    })
}

fn split_lines(input: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
    // `split` yields an empty piece after a final newline; it is not a line.
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// The original's blob id of an `index` line's value (`a1b2c3d..e4f5a6b 100644`): hex,
/// 4 to 64 digits, lower-cased; `None` for anything else and for git's all-zero id of a
/// file that did not exist.
fn blob_id(ids: &str) -> Option<String> {
    let (old, _) = ids.split_once("..")?;
    let ok = (4..=64).contains(&old.len())
        && old.bytes().all(|b| b.is_ascii_hexdigit())
        && old.bytes().any(|b| b != b'0');
    ok.then(|| old.to_ascii_lowercase())
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The start of an input line for an error message: at most [`QUOTE_LIMIT`] characters,
/// control characters escaped.
fn quote(line: &[u8]) -> String {
    let line = strip_cr(line);
    // Only the start is shown, so only the start is decoded: a line may be megabytes long.
    // `QUOTE_LIMIT + 1` characters take at most four bytes each; one more than the limit
    // tells whether to mark the cut.
    let head = line.get(..(QUOTE_LIMIT + 1) * 4).unwrap_or(line);
    quote_str(&String::from_utf8_lossy(head))
}

/// [`quote`] for text that is already a string.
fn quote_str(text: &str) -> String {
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == QUOTE_LIMIT {
            out.push('…');
            break;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// `text` with its control characters escaped (`\t`, `\u{1b}`): error messages end up in
/// terminals, logs and pages, where a raw escape sequence could rewrite what is shown.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut out, c);
    }
    out
}

fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
    }
}

fn is_binary_notice(line: &[u8]) -> bool {
    let line = strip_cr(line);
    line == b"GIT binary patch"
        || (line.starts_with(b"Binary files ") && line.ends_with(b" differ"))
}

fn binary_notice_path(line: &[u8]) -> String {
    // "Binary files a/x and b/x differ"
    let text = String::from_utf8_lossy(strip_cr(line));
    text.strip_prefix("Binary files ")
        .and_then(|rest| rest.strip_suffix(" differ"))
        .and_then(|rest| rest.rsplit(" and ").next())
        // Not a checked path: it is only named in the error, shortened and escaped.
        .map(|p| quote_str(strip_first_component(p)))
        .unwrap_or_else(|| "?".to_owned())
}

struct Parser<'a> {
    lines: &'a [&'a [u8]],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a [u8]> {
        self.lines.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<&'a [u8]> {
        self.lines.get(self.pos + ahead).copied()
    }

    /// 1-based number of the current line.
    fn line_no(&self) -> usize {
        self.pos + 1
    }

    /// Reads the mail header and commit message if the input is a `git format-patch` mail,
    /// leaving the position at the first line after the `---` separator.
    fn mail_header(&mut self) -> Result<Option<MailHeader>, PatchError> {
        let series = self
            .lines
            .iter()
            .filter(|l| mbox_commit(l).is_some())
            .count();
        if series > 1 {
            return Err(PatchError::Series { count: series });
        }
        let Some(first) = self.peek() else {
            return Ok(None);
        };
        let mut header = MailHeader {
            commit: mbox_commit(first),
            ..MailHeader::default()
        };
        if header.commit.is_some() {
            self.pos += 1;
        } else if !is_mail_field(first) {
            return Ok(None);
        }
        // Header fields, with RFC 5322 folded continuation lines, up to the blank line.
        let mut current: Option<(String, String)> = None;
        let mut fields = Vec::new();
        while let Some(line) = self.peek() {
            let line = strip_cr(line);
            self.pos += 1;
            if line.is_empty() {
                break;
            }
            let text = String::from_utf8_lossy(line);
            if line[0] == b' ' || line[0] == b'\t' {
                if let Some((_, value)) = current.as_mut() {
                    value.push(' ');
                    value.push_str(text.trim());
                }
                continue;
            }
            if let Some(field) = current.take() {
                fields.push(field);
            }
            if let Some((name, value)) = text.split_once(':') {
                current = Some((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        fields.extend(current);
        for (name, value) in fields {
            match name.as_str() {
                "from" => header.from = Some(value),
                "date" => header.date = Some(value),
                "subject" => header.subject = Some(strip_patch_tag(&value).to_owned()),
                _ => {}
            }
        }
        // The commit message runs to the `---` line that precedes the diffstat.
        let mut message = Vec::new();
        while let Some(line) = self.peek() {
            let line = strip_cr(line);
            if line == b"---" {
                self.pos += 1;
                break;
            }
            if line.starts_with(b"diff --git ") {
                // A mail without the separator (e.g. `git show` output): the diff starts here.
                break;
            }
            message.push(String::from_utf8_lossy(line).into_owned());
            self.pos += 1;
        }
        while message.last().is_some_and(|l| l.trim().is_empty()) {
            message.pop();
        }
        header.message = message.join("\n");
        Ok(Some(header))
    }

    /// Parses a `diff --git` file: extended headers, then `---`/`+++` and hunks if any.
    fn git_file(&mut self, rest: &[u8]) -> Result<FileDiff, PatchError> {
        let header_line = self.line_no();
        let whole = strip_cr(self.lines[self.pos]);
        if whole.len() > MAX_GIT_HEADER_BYTES {
            return Err(PatchError::GitHeaderTooLong {
                line: header_line,
                len: whole.len(),
                limit: MAX_GIT_HEADER_BYTES,
                text: quote(whole),
            });
        }
        let (old_raw, new_raw) =
            split_git_header_paths(strip_cr(rest)).ok_or_else(|| PatchError::BadPath {
                line: header_line,
                text: quote(self.lines[self.pos]),
            })?;
        let mut file = FileDiff {
            old_path: Some(checked_path(&old_raw, header_line)?),
            new_path: Some(checked_path(&new_raw, header_line)?),
            change: FileChange::Modified,
            old_mode: None,
            new_mode: None,
            hunks: Vec::new(),
            old_blob: None,
        };
        self.pos += 1;
        let mut similarity = None;
        while let Some(line) = self.peek() {
            let line_no = self.line_no();
            let text = strip_cr(line);
            let field = |prefix: &[u8]| -> Option<String> {
                text.strip_prefix(prefix)
                    .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            };
            if let Some(mode) = field(b"old mode ") {
                file.old_mode = Some(mode);
            } else if let Some(mode) = field(b"new mode ") {
                file.new_mode = Some(mode);
            } else if let Some(mode) = field(b"deleted file mode ") {
                file.old_mode = Some(mode);
                file.change = FileChange::Deleted;
                file.new_path = None;
            } else if let Some(mode) = field(b"new file mode ") {
                file.new_mode = Some(mode);
                file.change = FileChange::Added;
                file.old_path = None;
            } else if let Some(pct) = field(b"similarity index ") {
                similarity = pct.trim_end_matches('%').parse().ok();
            } else if let Some(ids) = field(b"index ") {
                // `index a1b2c3d..e4f5a6b 100644`: the original's blob id tells whether
                // two revisions patch the same version of the file.
                file.old_blob = blob_id(&ids);
            } else if field(b"dissimilarity index ").is_some() {
                // A rewrite score says nothing a reviewer needs here.
            } else if let Some(path) = field(b"rename from ") {
                file.old_path = Some(checked_tree_path(&unquote_path(&path, line_no)?, line_no)?);
                file.change = FileChange::Renamed { similarity };
            } else if let Some(path) = field(b"rename to ") {
                file.new_path = Some(checked_tree_path(&unquote_path(&path, line_no)?, line_no)?);
                file.change = FileChange::Renamed { similarity };
            } else if let Some(path) = field(b"copy from ") {
                file.old_path = Some(checked_tree_path(&unquote_path(&path, line_no)?, line_no)?);
                file.change = FileChange::Copied { similarity };
            } else if let Some(path) = field(b"copy to ") {
                file.new_path = Some(checked_tree_path(&unquote_path(&path, line_no)?, line_no)?);
                file.change = FileChange::Copied { similarity };
            } else if is_binary_notice(text) {
                return Err(PatchError::Binary {
                    line: line_no,
                    path: file.path().to_owned(),
                });
            } else {
                break;
            }
            self.pos += 1;
        }
        // `similarity index` may come before `rename from`; fix up the recorded value.
        match &mut file.change {
            FileChange::Renamed { similarity: s } | FileChange::Copied { similarity: s } => {
                *s = similarity
            }
            _ => {}
        }
        if self.peek().is_some_and(|l| l.starts_with(b"--- "))
            && self.peek_at(1).is_some_and(|l| l.starts_with(b"+++ "))
        {
            let (old, new) = self.file_header_pair()?;
            // The ---/+++ names are authoritative for content; keep the rename/add/delete
            // bookkeeping from the extended headers.
            if old.is_some() && !matches!(file.change, FileChange::Added) {
                file.old_path = old;
            }
            if new.is_some() && !matches!(file.change, FileChange::Deleted) {
                file.new_path = new;
            }
            file.hunks = self.hunks(file.path())?;
        } else {
            // No hunks. git writes such a file for a rename or copy, a mode change, or a
            // new or deleted empty file; anything else (a header alone, or with only an
            // `index` line) changes nothing, and accepting it would show a reviewer a
            // file that the fix does not touch.
            let changes_something = match file.change {
                FileChange::Added
                | FileChange::Deleted
                | FileChange::Renamed { .. }
                | FileChange::Copied { .. } => true,
                FileChange::Modified => {
                    file.old_mode.is_some()
                        && file.new_mode.is_some()
                        && file.old_mode != file.new_mode
                }
            };
            if !changes_something {
                return Err(PatchError::EmptyFileDiff {
                    line: header_line,
                    path: file.path().to_owned(),
                });
            }
        }
        Ok(file)
    }

    /// Parses a plain `---`/`+++` file and its hunks.
    fn plain_file(&mut self) -> Result<FileDiff, PatchError> {
        let (old_path, new_path) = self.file_header_pair()?;
        let change = match (&old_path, &new_path) {
            (None, Some(_)) => FileChange::Added,
            (Some(_), None) => FileChange::Deleted,
            (Some(old), Some(new)) if old != new => FileChange::Renamed { similarity: None },
            _ => FileChange::Modified,
        };
        let mut file = FileDiff {
            old_path,
            new_path,
            change,
            old_mode: None,
            new_mode: None,
            hunks: Vec::new(),
            old_blob: None,
        };
        file.hunks = self.hunks(file.path())?;
        Ok(file)
    }

    /// Reads a `---` line and the `+++` line after it. `/dev/null` becomes `None`.
    #[allow(clippy::type_complexity)] // (old, new) reads better here than a one-use struct
    fn file_header_pair(&mut self) -> Result<(Option<String>, Option<String>), PatchError> {
        let mut side = |prefix: &[u8]| -> Result<Option<String>, PatchError> {
            let line_no = self.line_no();
            let raw = self.lines[self.pos];
            let rest = strip_cr(raw).strip_prefix(prefix).unwrap_or_default();
            self.pos += 1;
            let text = std::str::from_utf8(rest).map_err(|_| PatchError::BadPath {
                line: line_no,
                text: quote(raw),
            })?;
            // `diff -u` appends a tab and a timestamp to each name.
            let name = text.split('\t').next().unwrap_or_default().trim_end();
            if name == "/dev/null" {
                return Ok(None);
            }
            Ok(Some(checked_path(&unquote_path(name, line_no)?, line_no)?))
        };
        let old = side(b"--- ")?;
        let new = side(b"+++ ")?;
        Ok((old, new))
    }

    /// Reads consecutive hunks.
    fn hunks(&mut self, path: &str) -> Result<Vec<Hunk>, PatchError> {
        let mut hunks = Vec::new();
        while self.peek().is_some_and(|l| l.starts_with(b"@@")) {
            hunks.push(self.hunk()?);
        }
        if hunks.is_empty() {
            return Err(PatchError::MissingHunks {
                line: self.pos,
                path: path.to_owned(),
            });
        }
        Ok(hunks)
    }

    fn hunk(&mut self) -> Result<Hunk, PatchError> {
        let hunk_line = self.line_no();
        let raw = self.lines[self.pos];
        let (old_start, old_lines, new_start, new_lines, section) =
            parse_hunk_header(strip_cr(raw)).ok_or_else(|| PatchError::MalformedHunkHeader {
                line: hunk_line,
                text: quote(raw),
            })?;
        // Refused here so that no line number of the hunk, nor anything computed from the
        // header downstream, can wrap: every line number is below `start + count`.
        if old_start.checked_add(old_lines).is_none() || new_start.checked_add(new_lines).is_none()
        {
            return Err(PatchError::HunkRangeOverflow {
                line: hunk_line,
                text: quote(raw),
            });
        }
        self.pos += 1;
        let mut hunk = Hunk {
            old_start,
            old_lines,
            new_start,
            new_lines,
            section,
            input_line: hunk_line,
            lines: Vec::new(),
        };
        let (mut old_left, mut new_left) = (old_lines, new_lines);
        let (mut old_no, mut new_no) = (old_start, new_start);
        while let Some(line) = self.peek() {
            if line.starts_with(b"\\") {
                // `\ No newline at end of file` belongs to the line before it.
                if let Some(last) = hunk.lines.last_mut() {
                    last.no_newline_at_eof = true;
                }
                self.pos += 1;
                continue;
            }
            if old_left == 0 && new_left == 0 {
                break;
            }
            // Some mailers strip the single space of an empty context line.
            let (kind, text) = match line.first() {
                None => (LineKind::Context, &line[..0]),
                Some(b' ') => (LineKind::Context, &line[1..]),
                Some(b'-') => (LineKind::Removed, &line[1..]),
                Some(b'+') => (LineKind::Added, &line[1..]),
                Some(_) => break,
            };
            let fits = match kind {
                LineKind::Context => old_left > 0 && new_left > 0,
                LineKind::Removed => old_left > 0,
                LineKind::Added => new_left > 0,
            };
            if !fits {
                break;
            }
            // `fits` says the side has lines left, so the counts cannot go below zero, and
            // the numbers stay at most `start + count`, which the header check bounds; the
            // saturating adds only make that visible.
            let (old_line, new_line) = match kind {
                LineKind::Context => (Some(old_no), Some(new_no)),
                LineKind::Removed => (Some(old_no), None),
                LineKind::Added => (None, Some(new_no)),
            };
            if old_line.is_some() {
                old_left -= 1;
                old_no = old_no.saturating_add(1);
            }
            if new_line.is_some() {
                new_left -= 1;
                new_no = new_no.saturating_add(1);
            }
            // Within a hunk a trailing CR is content (a CRLF file), except that an input
            // pasted with CRLF line ends has one on every line; the caller normalises that.
            hunk.lines.push(HunkLine {
                kind,
                old_line,
                new_line,
                text: String::from_utf8_lossy(text).into_owned(),
                no_newline_at_eof: false,
            });
            self.pos += 1;
        }
        if old_left > 0 || new_left > 0 {
            return Err(PatchError::TruncatedHunk {
                line: self.line_no(),
                hunk_line,
                old_missing: old_left,
                new_missing: new_left,
            });
        }
        Ok(hunk)
    }
}

/// The commit id of an mbox separator line `From <40 hex> Mon Sep 17 00:00:00 2001`.
fn mbox_commit(line: &[u8]) -> Option<String> {
    let rest = strip_cr(line).strip_prefix(b"From ")?;
    let (id, date) = rest.split_at_checked(40)?;
    (id.iter().all(u8::is_ascii_hexdigit) && date.starts_with(b" "))
        .then(|| String::from_utf8_lossy(id).into_owned())
}

fn is_mail_field(line: &[u8]) -> bool {
    let line = strip_cr(line);
    [
        &b"From: "[..],
        b"Subject: ",
        b"Date: ",
        b"Message-Id: ",
        b"Message-ID: ",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// `[PATCH v2 3/7] net: fix x` -> `net: fix x`.
fn strip_patch_tag(subject: &str) -> &str {
    let trimmed = subject.trim_start();
    if trimmed.starts_with('[') {
        if let Some(end) = trimmed.find(']') {
            return trimmed[end + 1..].trim_start();
        }
    }
    trimmed
}

/// `@@ -1,5 +1,6 @@ section` -> (1, 5, 1, 6, "section").
fn parse_hunk_header(line: &[u8]) -> Option<(u32, u32, u32, u32, String)> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("@@ -")?;
    let (ranges, section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(u32, u32)> {
        let (start, count) = match r.split_once(',') {
            Some((s, c)) => (s.parse().ok()?, c.parse().ok()?),
            None => (r.parse().ok()?, 1),
        };
        // Start 0 only describes an empty side.
        (start > 0 || count == 0).then_some((start, count))
    };
    let (old_start, old_lines) = range(old)?;
    let (new_start, new_lines) = range(new)?;
    if old_lines == 0 && new_lines == 0 {
        return None;
    }
    Some((
        old_start,
        old_lines,
        new_start,
        new_lines,
        section.trim().to_owned(),
    ))
}

/// Splits the `a/x b/y` part of a `diff --git` line into its two (still prefixed) paths.
fn split_git_header_paths(rest: &[u8]) -> Option<(String, String)> {
    let text = std::str::from_utf8(rest).ok()?;
    if text.starts_with('"') {
        let (old, after) = take_quoted(text)?;
        let after = after.strip_prefix(' ')?;
        let new = if after.starts_with('"') {
            take_quoted(after)?.0
        } else {
            after.to_owned()
        };
        return Some((old, new));
    }
    if let Some(idx) = text.find(" \"") {
        let new = take_quoted(&text[idx + 1..])?.0;
        return Some((text[..idx].to_owned(), new));
    }
    let split = unquoted_split(text)?;
    Some((text[..split].to_owned(), text[split + 1..].to_owned()))
}

/// Where to split the unquoted `a/x b/y` of a `diff --git` line: the first space at which
/// both halves are equal after their first component (git writes the same name twice when
/// the file was not renamed, and unquoted names may contain spaces), else the first space.
///
/// Comparing the halves at every space is quadratic: a line of spaces without a slash
/// makes each comparison scan the whole line. Instead each half's stripped length is found
/// in constant time, and the halves are compared only where the lengths agree. As the
/// split moves right, the right half after its first component never grows, and the left
/// half after its first component grows strictly, except once: at the line's first slash,
/// where the left half's own first component ends. So the lengths agree at most twice and
/// the whole search is linear.
fn unquoted_split(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let len = bytes.len();
    let first_slash = bytes.iter().position(|&b| b == b'/');
    // Right to left, so that the first slash after each space is known as it is reached;
    // the last match and space seen are the leftmost ones.
    let mut next_slash = None;
    let mut first_match = None;
    let mut first_space = None;
    for i in (0..len).rev() {
        match bytes[i] {
            b'/' => next_slash = Some(i),
            b' ' => {
                first_space = Some(i);
                // The halves `text[..i]` and `text[i + 1..]` after `strip_first_component`.
                let left = match first_slash {
                    Some(slash) if slash < i => slash + 1..i,
                    _ => 0..i,
                };
                let right = match next_slash {
                    Some(slash) => slash + 1..len,
                    None => i + 1..len,
                };
                if left.len() == right.len() && bytes.get(left) == bytes.get(right) {
                    first_match = Some(i);
                }
            }
            _ => {}
        }
    }
    first_match.or(first_space)
}

/// Reads a C-quoted string as git writes names with unusual characters; returns the
/// string and the rest of the input after the closing quote.
fn take_quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut bytes = Vec::new();
    let mut iter = body.char_indices();
    while let Some((i, c)) = iter.next() {
        match c {
            '"' => return Some((String::from_utf8(bytes).ok()?, &body[i + 1..])),
            '\\' => {
                let (_, esc) = iter.next()?;
                match esc {
                    'n' => bytes.push(b'\n'),
                    't' => bytes.push(b'\t'),
                    '"' => bytes.push(b'"'),
                    '\\' => bytes.push(b'\\'),
                    'a' => bytes.push(7),
                    'b' => bytes.push(8),
                    'f' => bytes.push(12),
                    'r' => bytes.push(b'\r'),
                    'v' => bytes.push(11),
                    '0'..='3' => {
                        // `\ooo`: one byte in octal, as git writes non-ASCII bytes.
                        let mut byte = esc.to_digit(8)?;
                        for _ in 0..2 {
                            let (_, digit) = iter.next()?;
                            byte = byte * 8 + digit.to_digit(8)?;
                        }
                        bytes.push(u8::try_from(byte).ok()?);
                    }
                    _ => return None,
                }
            }
            _ => {
                let mut buf = [0u8; 4];
                bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    None
}

fn unquote_path(name: &str, line: usize) -> Result<String, PatchError> {
    if name.starts_with('"') {
        take_quoted(name)
            .map(|(path, _)| path)
            .ok_or_else(|| PatchError::BadPath {
                line,
                text: quote_str(name),
            })
    } else {
        Ok(name.to_owned())
    }
}

/// Removes the first path component, as `patch -p1` does (`a/net/x.c` -> `net/x.c`).
fn strip_first_component(path: &str) -> &str {
    match path.split_once('/') {
        Some((_, rest)) => rest,
        None => path,
    }
}

/// Strips the `a/` or `b/` component and refuses paths that leave the tree.
fn checked_path(raw: &str, line: usize) -> Result<String, PatchError> {
    // The prefix is bounded with the rest: it is thrown away, but it is still input.
    checked_len(raw, line)?;
    if raw.starts_with('/') {
        return Err(PatchError::UnsafePath {
            line,
            path: raw.to_owned(),
            problem: PathProblem::Absolute,
        });
    }
    checked_tree_path(strip_first_component(raw), line)
}

/// Refuses paths that leave the tree or hold characters no kernel path has; for names git
/// writes without a prefix (`rename from`, `copy to`).
fn checked_tree_path(path: &str, line: usize) -> Result<String, PatchError> {
    checked_len(path, line)?;
    let problem = if path.starts_with('/') {
        Some(PathProblem::Absolute)
    } else if path.split('/').any(|c| c == "..") {
        Some(PathProblem::ParentComponent)
    } else if let Some(c) = path.chars().find(|c| c.is_control()) {
        Some(PathProblem::ControlCharacter(c))
    } else if path.contains('\\') {
        Some(PathProblem::Backslash)
    } else if path.is_empty() {
        Some(PathProblem::Empty)
    } else {
        None
    };
    match problem {
        Some(problem) => Err(PatchError::UnsafePath {
            line,
            path: path.to_owned(),
            problem,
        }),
        None => Ok(path.to_owned()),
    }
}

/// Refuses a name longer than [`MAX_PATH_BYTES`], before anything else looks at it.
fn checked_len(name: &str, line: usize) -> Result<(), PatchError> {
    if name.len() > MAX_PATH_BYTES {
        return Err(PatchError::PathTooLong {
            line,
            len: name.len(),
            limit: MAX_PATH_BYTES,
            text: quote_str(name),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
