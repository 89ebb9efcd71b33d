//! Renders a parsed diff for reading: syntax highlighting (syntect), intra-line change
//! emphasis (similar), and line HTML the pages place as is.
//!
//! Highlighting maps syntect's scopes onto a handful of classes the stylesheet colours
//! (`k` keyword, `t` type, `s` string, `n` number/constant, `c` comment, `p` preprocessor,
//! `f` function name) instead of inline colours, so the theme lives in CSS. Changed words
//! inside a changed line get the extra class `x`.

use analyzer::patch::{FileChange, FileDiff, Hunk, LineKind, Patch};
use graftbench_app::model::{self, FileView, HunkView, LineView, SideBySideRow};
use similar::{Algorithm, DiffTag, TextDiff};
use syntect::parsing::{ParseState, Scope, ScopeStack, SyntaxReference, SyntaxSet};

/// Pairs of lines less alike than this are shown as wholly changed, without emphasis:
/// marking most of a line says less than marking none of it.
const EMPHASIS_MIN_SIMILARITY: f32 = 0.4;
/// Patches with fewer diff lines than this are rendered on one thread.
const PARALLEL_MIN_LINES: usize = 1_000;
/// Lines longer than this are not highlighted (minified or generated content).
const MAX_HIGHLIGHT_LINE: usize = 2_000;
/// Paired lines longer than this (either of them) get no word emphasis: a word diff of
/// two long lines costs more than it tells, and a crafted pair of 1 MB lines took 14 s.
pub const MAX_EMPHASIS_LINE: usize = 400;
/// The word diff of one pair of lines gives up (and approximates) after this long.
const EMPHASIS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(20);

/// A highlight class for each scope prefix; the innermost matching scope wins.
const SCOPE_CLASSES: &[(&str, &str)] = &[
    ("comment", "c"),
    ("string", "s"),
    ("constant.character", "s"),
    ("constant.numeric", "n"),
    ("constant.language", "n"),
    ("constant.other", "n"),
    ("meta.preprocessor", "p"),
    ("keyword.control.import", "p"),
    ("entity.name.function", "f"),
    ("support.function", "f"),
    ("storage.type", "t"),
    ("support.type", "t"),
    ("entity.name.type", "t"),
    ("storage.modifier", "k"),
    ("keyword.operator", ""),
    ("keyword", "k"),
    ("storage", "k"),
];

/// Holds the loaded syntax definitions; build once and share.
pub struct DiffRenderer {
    syntaxes: SyntaxSet,
    /// One more copy per extra core, for rendering files in parallel: threads that share
    /// compiled regexes contend for their match caches and gain almost nothing.
    worker_syntaxes: Vec<SyntaxSet>,
    scope_classes: Vec<(Scope, &'static str)>,
}

impl Default for DiffRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl DiffRenderer {
    /// Loads syntect's bundled syntax definitions, once per core.
    pub fn new() -> DiffRenderer {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        DiffRenderer {
            syntaxes: SyntaxSet::load_defaults_nonewlines(),
            worker_syntaxes: (1..threads)
                .map(|_| SyntaxSet::load_defaults_nonewlines())
                .collect(),
            scope_classes: SCOPE_CLASSES
                .iter()
                .filter_map(|(name, class)| Scope::new(name).ok().map(|s| (s, *class)))
                .collect(),
        }
    }

    /// Renders every file of a patch without highlighting or intra-line emphasis: escaped
    /// text only, in about a hundredth of the time of [`DiffRenderer::render`]. What a
    /// page shows of a long revision until its full rendering is ready.
    pub fn render_plain(&self, patch: &Patch) -> Vec<FileView> {
        patch
            .files
            .iter()
            .map(|f| self.render_file(&self.syntaxes, f, Mode::Plain))
            .collect()
    }

    /// Renders every file of a patch. Files are independent, so a large patch is
    /// highlighted on all cores; highlighting dominates the cost of a diff page.
    pub fn render(&self, patch: &Patch) -> Vec<FileView> {
        let lines: usize = patch
            .files
            .iter()
            .flat_map(|f| &f.hunks)
            .map(|h| h.lines.len())
            .sum();
        let threads = 1 + self.worker_syntaxes.len();
        if lines < PARALLEL_MIN_LINES || threads < 2 || patch.files.len() < 2 {
            return patch
                .files
                .iter()
                .map(|f| self.render_file(&self.syntaxes, f, Mode::Full))
                .collect();
        }
        let chunk = patch.files.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = patch
                .files
                .chunks(chunk)
                .zip(std::iter::once(&self.syntaxes).chain(&self.worker_syntaxes))
                .map(|(files, syntaxes)| {
                    scope.spawn(move || {
                        files
                            .iter()
                            .map(|f| self.render_file(syntaxes, f, Mode::Full))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(views) => views,
                    // Rendering does not panic on input; if it ever did, fail this page
                    // the same way the sequential path would.
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    fn syntax_for<'s>(syntaxes: &'s SyntaxSet, path: &str) -> &'s SyntaxReference {
        let name = path.rsplit('/').next().unwrap_or(path);
        let by_name = match name {
            "Makefile" | "Kbuild" => syntaxes.find_syntax_by_extension("make"),
            _ => None,
        };
        let by_extension = || {
            name.rsplit_once('.')
                .and_then(|(_, ext)| syntaxes.find_syntax_by_extension(ext))
        };
        by_name
            .or_else(by_extension)
            .unwrap_or_else(|| syntaxes.find_syntax_plain_text())
    }

    fn render_file(&self, syntaxes: &SyntaxSet, file: &FileDiff, mode: Mode) -> FileView {
        let syntax = Self::syntax_for(syntaxes, file.path());
        let mode_change = match (&file.old_mode, &file.new_mode) {
            (Some(old), Some(new)) if old != new => Some(format!("{old} → {new}")),
            _ => None,
        };
        let change = match file.change {
            FileChange::Modified => "modified",
            FileChange::Added => "added",
            FileChange::Deleted => "deleted",
            FileChange::Renamed { .. } => "renamed",
            FileChange::Copied { .. } => "copied",
        };
        let hunks: Vec<HunkView> = file
            .hunks
            .iter()
            .map(|h| self.render_hunk(syntaxes, h, syntax, mode))
            .collect();
        let count = |kind| {
            file.hunks
                .iter()
                .flat_map(|h| &h.lines)
                .filter(|l| l.kind == kind)
                .count()
        };
        FileView {
            old_path: file.old_path.clone(),
            new_path: file.new_path.clone(),
            change: change.to_owned(),
            mode_change,
            syntax: if syntax.name == "Plain Text" {
                "plain".to_owned()
            } else {
                syntax.name.clone()
            },
            added: count(LineKind::Added),
            removed: count(LineKind::Removed),
            hunks,
            held_back: None,
        }
    }

    fn render_hunk(
        &self,
        syntaxes: &SyntaxSet,
        hunk: &Hunk,
        syntax: &SyntaxReference,
        mode: Mode,
    ) -> HunkView {
        if mode == Mode::Plain {
            let lines = hunk
                .lines
                .iter()
                .map(|line| LineView {
                    kind: view_kind(line.kind),
                    old: line.old_line,
                    new: line.new_line,
                    html: line_html(
                        &line.text,
                        &[Token::plain(0, line.text.len())],
                        line.no_newline_at_eof,
                    ),
                    no_eol: line.no_newline_at_eof,
                })
                .collect();
            return hunk_view(hunk, lines);
        }
        // Each side is highlighted as the file it comes from, so a comment or string that
        // opens on a removed line does not colour the added lines after it.
        let old_side: Vec<&str> = hunk
            .lines
            .iter()
            .filter(|l| l.kind != LineKind::Added)
            .map(|l| l.text.as_str())
            .collect();
        let new_side: Vec<&str> = hunk
            .lines
            .iter()
            .filter(|l| l.kind != LineKind::Removed)
            .map(|l| l.text.as_str())
            .collect();
        let mut old_tokens = self.highlight(syntaxes, &old_side, syntax).into_iter();
        let mut new_tokens = self.highlight(syntaxes, &new_side, syntax).into_iter();
        let mut tokens: Vec<Vec<Token>> = hunk
            .lines
            .iter()
            .map(|line| match line.kind {
                LineKind::Removed => old_tokens.next().unwrap_or_default(),
                LineKind::Added => new_tokens.next().unwrap_or_default(),
                LineKind::Context => {
                    old_tokens.next();
                    new_tokens.next().unwrap_or_default()
                }
            })
            .collect();
        let kinds: Vec<model::LineKind> = hunk.lines.iter().map(|l| view_kind(l.kind)).collect();
        for SideBySideRow { left, right } in model::side_by_side(&kinds) {
            if let (Some(l), Some(r)) = (left, right) {
                if l != r {
                    let (old, new) = emphasis(&hunk.lines[l].text, &hunk.lines[r].text);
                    mark(&mut tokens[l], &old);
                    mark(&mut tokens[r], &new);
                }
            }
        }
        let lines = hunk
            .lines
            .iter()
            .zip(tokens)
            .map(|(line, tokens)| LineView {
                kind: view_kind(line.kind),
                old: line.old_line,
                new: line.new_line,
                html: line_html(&line.text, &tokens, line.no_newline_at_eof),
                no_eol: line.no_newline_at_eof,
            })
            .collect();
        hunk_view(hunk, lines)
    }

    /// Highlight classes for consecutive lines of one file.
    fn highlight(
        &self,
        syntaxes: &SyntaxSet,
        lines: &[&str],
        syntax: &SyntaxReference,
    ) -> Vec<Vec<Token>> {
        let mut state = ParseState::new(syntax);
        let mut stack = ScopeStack::new();
        lines
            .iter()
            .map(|line| {
                if line.len() > MAX_HIGHLIGHT_LINE {
                    return vec![Token::plain(0, line.len())];
                }
                let Ok(ops) = state.parse_line(line, syntaxes) else {
                    return vec![Token::plain(0, line.len())];
                };
                let mut tokens = Vec::new();
                let mut start = 0;
                for (pos, op) in ops {
                    if pos > start {
                        tokens.push(Token {
                            start,
                            end: pos,
                            class: self.class_of(&stack),
                            emphasized: false,
                        });
                        start = pos;
                    }
                    // A failed op leaves the stack as it was; the colours may be off for
                    // the rest of the hunk, which is harmless.
                    let _ = stack.apply(&op);
                }
                if start < line.len() {
                    tokens.push(Token {
                        start,
                        end: line.len(),
                        class: self.class_of(&stack),
                        emphasized: false,
                    });
                }
                tokens
            })
            .collect()
    }

    fn class_of(&self, stack: &ScopeStack) -> &'static str {
        for scope in stack.as_slice().iter().rev() {
            for (prefix, class) in &self.scope_classes {
                if prefix.is_prefix_of(*scope) {
                    return class;
                }
            }
        }
        ""
    }
}

/// How much work a rendering does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Highlighting and intra-line emphasis.
    Full,
    /// Escaped text only.
    Plain,
}

/// A hunk's view around its rendered lines.
fn hunk_view(hunk: &Hunk, lines: Vec<LineView>) -> HunkView {
    let range = format!(
        "@@ -{},{} +{},{} @@",
        hunk.old_start, hunk.old_lines, hunk.new_start, hunk.new_lines
    );
    let section = if hunk.section.is_empty() {
        section_from_context(hunk)
    } else {
        hunk.section.clone()
    };
    HunkView {
        range,
        section,
        lines,
    }
}

fn view_kind(kind: LineKind) -> model::LineKind {
    match kind {
        LineKind::Context => model::LineKind::Context,
        LineKind::Removed => model::LineKind::Removed,
        LineKind::Added => model::LineKind::Added,
    }
}

/// A run of a line's bytes with one highlight class.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    start: usize,
    end: usize,
    class: &'static str,
    emphasized: bool,
}

impl Token {
    fn plain(start: usize, end: usize) -> Token {
        Token {
            start,
            end,
            class: "",
            emphasized: false,
        }
    }
}

/// Splits a line of code into the units a reader compares: identifier or number runs,
/// white-space runs, and single punctuation characters (`);` is two changes, not one).
fn code_words(line: &str) -> Vec<&str> {
    #[derive(PartialEq)]
    enum Class {
        Word,
        Space,
        Punct,
    }
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            Class::Word
        } else if c.is_whitespace() {
            Class::Space
        } else {
            Class::Punct
        }
    };
    let mut words = Vec::new();
    let mut start = 0;
    let mut previous: Option<Class> = None;
    for (i, c) in line.char_indices() {
        let current = class(c);
        let joins = previous.as_ref() == Some(&current) && current != Class::Punct;
        if !joins && i > start {
            words.push(&line[start..i]);
            start = i;
        }
        previous = Some(current);
    }
    if start < line.len() {
        words.push(&line[start..]);
    }
    words
}

/// Byte ranges that differ between two paired lines, compared as [`code_words`]; empty
/// when the lines are too different for emphasis to help.
#[allow(clippy::type_complexity)] // (old ranges, new ranges)
fn emphasis(old: &str, new: &str) -> (Vec<(usize, usize)>, Vec<(usize, usize)>) {
    if old.len() > MAX_EMPHASIS_LINE || new.len() > MAX_EMPHASIS_LINE {
        return (Vec::new(), Vec::new());
    }
    let old_words = code_words(old);
    let new_words = code_words(new);
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Patience)
        .timeout(EMPHASIS_TIMEOUT)
        .diff_slices(&old_words, &new_words);
    if diff.ratio() < EMPHASIS_MIN_SIMILARITY {
        return (Vec::new(), Vec::new());
    }
    let offsets = |words: &[&str]| -> Vec<usize> {
        let mut at = 0;
        let mut offsets = Vec::with_capacity(words.len() + 1);
        for word in words {
            offsets.push(at);
            at += word.len();
        }
        offsets.push(at);
        offsets
    };
    let old_at = offsets(&old_words);
    let new_at = offsets(&new_words);
    let (mut old_ranges, mut new_ranges) = (Vec::new(), Vec::new());
    for op in diff.ops() {
        if op.tag() == DiffTag::Equal {
            continue;
        }
        let (o, n) = (op.old_range(), op.new_range());
        if !o.is_empty() {
            old_ranges.push((old_at[o.start], old_at[o.end]));
        }
        if !n.is_empty() {
            new_ranges.push((new_at[n.start], new_at[n.end]));
        }
    }
    (old_ranges, new_ranges)
}

/// Splits tokens at the edges of `ranges` and flags the pieces inside them.
///
/// Both lists are sorted by position and their entries do not overlap (tokens tile the
/// line; ranges come from the diff's ops in order), so one walk over both does it.
fn mark(tokens: &mut Vec<Token>, ranges: &[(usize, usize)]) {
    if ranges.is_empty() {
        return;
    }
    let mut out = Vec::with_capacity(tokens.len() + ranges.len() * 2);
    let mut next_range = 0;
    for token in tokens.drain(..) {
        let mut start = token.start;
        while start < token.end {
            // Ranges that end at or before this point can no longer cut anything.
            while next_range < ranges.len() && ranges[next_range].1 <= start {
                next_range += 1;
            }
            let (end, emphasized) = match ranges.get(next_range) {
                Some(&(a, b)) if a <= start => (b.min(token.end), true),
                Some(&(a, _)) => (a.min(token.end), false),
                None => (token.end, false),
            };
            out.push(Token {
                start,
                end,
                class: token.class,
                emphasized,
            });
            start = end;
        }
    }
    *tokens = out;
}

/// Joins neighbouring tokens that look the same, so `/* old */` is one span, not three.
fn merge(tokens: &[Token]) -> Vec<Token> {
    let mut merged: Vec<Token> = Vec::with_capacity(tokens.len());
    for token in tokens {
        match merged.last_mut() {
            Some(last)
                if last.end == token.start
                    && last.class == token.class
                    && last.emphasized == token.emphasized =>
            {
                last.end = token.end;
            }
            _ => merged.push(token.clone()),
        }
    }
    merged
}

fn line_html(text: &str, tokens: &[Token], no_eol: bool) -> String {
    let tokens = merge(tokens);
    let mut html = String::with_capacity(text.len() + tokens.len() * 16);
    for token in &tokens {
        let Some(piece) = text.get(token.start..token.end) else {
            // Offsets come from the same text; a mismatch would be a bug, not input.
            continue;
        };
        match (token.class, token.emphasized) {
            ("", false) => escape_into(&mut html, piece),
            (class, emphasized) => {
                html.push_str("<span class=\"");
                html.push_str(class);
                if emphasized {
                    if !class.is_empty() {
                        html.push(' ');
                    }
                    html.push('x');
                }
                html.push_str("\">");
                escape_into(&mut html, piece);
                html.push_str("</span>");
            }
        }
    }
    if no_eol {
        html.push_str("<span class=\"noeol\" title=\"No newline at end of file\">\u{2205}</span>");
    }
    html
}

/// Escapes text for HTML element content and attribute values (the app's escaper, so the
/// page head and the diff escape alike).
pub use graftbench_app::escape_html_into as escape_into;

/// When the diff came without git's hunk heading, the enclosing function may still be in
/// the hunk's leading context: git's default rule, a line starting with a letter, `_` or
/// `$`, nearest the first change.
fn section_from_context(hunk: &Hunk) -> String {
    hunk.lines
        .iter()
        .take_while(|l| l.kind == LineKind::Context)
        .filter(|l| {
            l.text
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        })
        .last()
        .map(|l| l.text.trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(diff: &str) -> Vec<FileView> {
        let patch = analyzer::patch::parse(diff.as_bytes()).unwrap();
        DiffRenderer::new().render(&patch)
    }

    const C_FIX: &str = "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n\
@@ -7,4 +7,4 @@\n static int cmdline_proc_show(struct seq_file *m, void *v)\n {\n\
-\tseq_puts(m, saved_command_line); /* old */\n+\tseq_puts(m, boot_command_line); /* old */\n \treturn 0;\n";

    #[test]
    fn c_is_highlighted_with_classes() {
        let files = render(C_FIX);
        assert_eq!(files[0].syntax, "C");
        let first = &files[0].hunks[0].lines[0].html;
        assert!(first.contains("<span class=\"t\">int</span>"), "{first}");
        assert!(first.contains("<span class=\"k\">static</span>"), "{first}");
        let removed = &files[0].hunks[0].lines[2].html;
        assert!(
            removed.contains("<span class=\"c\">/* old */</span>"),
            "{removed}"
        );
    }

    #[test]
    fn plain_rendering_is_the_same_lines_escaped_without_classes() {
        let diff = format!("{C_FIX}+\tx = a < b && c > \"<i>\";\n");
        let diff = diff.replace("@@ -7,4 +7,4 @@", "@@ -7,4 +7,5 @@");
        let patch = analyzer::patch::parse(diff.as_bytes()).unwrap();
        let renderer = DiffRenderer::new();
        let (full, plain) = (renderer.render(&patch), renderer.render_plain(&patch));
        assert_eq!(plain[0].syntax, full[0].syntax);
        assert_eq!(
            (plain[0].added, plain[0].removed),
            (full[0].added, full[0].removed)
        );
        let lines = |files: &[FileView]| -> Vec<(Option<u32>, Option<u32>)> {
            files[0].hunks[0]
                .lines
                .iter()
                .map(|l| (l.old, l.new))
                .collect()
        };
        assert_eq!(lines(&plain), lines(&full));
        assert_eq!(plain[0].hunks[0].section, full[0].hunks[0].section);
        let html: Vec<&str> = plain[0].hunks[0]
            .lines
            .iter()
            .map(|l| l.html.as_str())
            .collect();
        assert_eq!(
            html[0],
            "static int cmdline_proc_show(struct seq_file *m, void *v)"
        );
        assert!(html.iter().all(|h| !h.contains("<span")), "{html:?}");
        assert_eq!(
            html[5],
            "\tx = a &lt; b &amp;&amp; c &gt; &quot;&lt;i&gt;&quot;;"
        );
    }

    #[test]
    fn changed_words_are_emphasized_on_both_sides() {
        let files = render(C_FIX);
        let lines = &files[0].hunks[0].lines;
        assert!(
            lines[2]
                .html
                .contains("<span class=\"x\">saved_command_line</span>"),
            "{}",
            lines[2].html
        );
        assert!(
            lines[3]
                .html
                .contains("<span class=\"x\">boot_command_line</span>"),
            "{}",
            lines[3].html
        );
        // Unchanged words on a changed line are not emphasized.
        assert!(lines[3].html.contains("seq_puts"));
        assert!(!lines[3].html.contains("x\">seq_puts"));
    }

    #[test]
    fn code_words_split_identifiers_from_punctuation() {
        assert_eq!(
            code_words("\tseq_puts(m, x);  /* a */"),
            [
                "\t", "seq_puts", "(", "m", ",", " ", "x", ")", ";", "  ", "/", "*", " ", "a", " ",
                "*", "/"
            ]
        );
    }

    #[test]
    fn unrelated_lines_get_no_emphasis() {
        let files =
            render("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-int alpha = 1;\n+return beta(gamma);\n");
        assert!(files[0].hunks[0]
            .lines
            .iter()
            .all(|l| !l.html.contains('x')));
    }

    #[test]
    fn markup_in_the_diff_is_escaped() {
        let files =
            render("--- a/README\n+++ b/README\n@@ -1 +1 @@\n-a\n+<script>alert('x')</script>&\n");
        assert_eq!(files[0].syntax, "plain");
        assert_eq!(
            files[0].hunks[0].lines[1].html,
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;"
        );
    }

    #[test]
    fn section_comes_from_leading_context_when_git_gave_none() {
        let files = render(C_FIX);
        assert_eq!(
            files[0].hunks[0].section,
            "static int cmdline_proc_show(struct seq_file *m, void *v)"
        );
        assert_eq!(files[0].hunks[0].range, "@@ -7,4 +7,4 @@");
    }

    #[test]
    fn no_newline_marker_is_rendered() {
        let files =
            render("--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n");
        assert!(files[0].hunks[0].lines[0].no_eol);
        assert!(files[0].hunks[0].lines[0].html.contains("noeol"));
    }

    /// Security review, finding 5: a pair of 1 MB lines took 13.9 s of word emphasis.
    /// Long pairs are shown without emphasis, and still escaped and whole.
    #[test]
    fn long_paired_lines_get_no_emphasis() {
        let old = format!("{} a", "w ".repeat(500_000));
        let new = format!("{} b", "w ".repeat(500_000));
        assert_eq!(emphasis(&old, &new), (Vec::new(), Vec::new()));
        let at_limit_old = format!("{}a", "w ".repeat((MAX_EMPHASIS_LINE - 1) / 2));
        let at_limit_new = format!("{}b", "w ".repeat((MAX_EMPHASIS_LINE - 1) / 2));
        assert!(at_limit_old.len() <= MAX_EMPHASIS_LINE);
        let (o, n) = emphasis(&at_limit_old, &at_limit_new);
        assert_eq!(o.len(), 1);
        assert_eq!(n.len(), 1);
        let files = render(&format!(
            "--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-{old}<\n+{new}<\n"
        ));
        let lines = &files[0].hunks[0].lines;
        assert!(!lines[1].html.contains("class=\"x"), "no emphasis");
        assert!(lines[1].html.ends_with("b&lt;"));
    }

    /// `mark` walks tokens and ranges once; it must cut exactly where the old
    /// token-by-range search did.
    #[test]
    fn mark_cuts_tokens_at_range_edges() {
        let token = |start, end, class| Token {
            start,
            end,
            class,
            emphasized: false,
        };
        let mut tokens = vec![token(0, 4, "k"), token(4, 10, ""), token(10, 12, "n")];
        mark(&mut tokens, &[(2, 5), (9, 11)]);
        let got: Vec<(usize, usize, &str, bool)> = tokens
            .iter()
            .map(|t| (t.start, t.end, t.class, t.emphasized))
            .collect();
        assert_eq!(
            got,
            [
                (0, 2, "k", false),
                (2, 4, "k", true),
                (4, 5, "", true),
                (5, 9, "", false),
                (9, 10, "", true),
                (10, 11, "n", true),
                (11, 12, "n", false),
            ]
        );
    }
}
