//! A C source file's shape, as far as the analysis needs it: which lines are
//! preprocessor directives (and which macro a `#define` defines), which top-level item
//! (function, type, data) each line belongs to, and where every identifier is, outside
//! comments and string literals.
//!
//! This is not a C parser: it counts braces and parentheses outside comments, strings
//! and directives, the way kernel code is laid out. Where kernel style helps it does:
//! a `}` in the first column closes every open brace (code duplicated between `#if` and
//! `#else` can leave an extra `{` open). Every pass is linear in the file.

/// One directive kind, by the word after `#`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirectiveKind {
    Define,
    Undef,
    If,
    Ifdef,
    Ifndef,
    Elif,
    Else,
    Endif,
    Include,
    Other,
}

impl DirectiveKind {
    /// `#if`, `#ifdef`, `#ifndef`, `#elif`, `#else` or `#endif`: a conditional group's
    /// boundary.
    pub(crate) fn is_conditional(self) -> bool {
        matches!(
            self,
            DirectiveKind::If
                | DirectiveKind::Ifdef
                | DirectiveKind::Ifndef
                | DirectiveKind::Elif
                | DirectiveKind::Else
                | DirectiveKind::Endif
        )
    }
}

/// The byte offset where each line of `text` starts (index 0 is line 1).
pub(crate) fn line_starts(text: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(
        text.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i + 1),
    );
    starts
}

/// A preprocessor directive with its continuation lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) kind: DirectiveKind,
    /// The macro a `#define`, `#undef`, `#ifdef` or `#ifndef` names.
    pub(crate) name: Option<String>,
    pub(crate) first: u32,
    pub(crate) last: u32,
}

/// What a top-level item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemKind {
    /// A function definition, head and body.
    Function,
    /// A `struct`, `union` or `enum` definition, or a `typedef`.
    Type,
    /// A variable: `initialised` when it has an initialiser (or is defined by a
    /// `DEFINE_...()` macro, which initialises it).
    Data { initialised: bool },
    /// A prototype, `extern` declaration, forward declaration or macro invocation.
    Declaration,
    /// Anything else with braces.
    Other,
}

/// A top-level item and the lines it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) kind: ItemKind,
    /// Its name: the function, the variable, `struct foo`; empty when none was found.
    pub(crate) name: String,
    pub(crate) first: u32,
    pub(crate) last: u32,
    /// For an `enum`: each enumerator and its line.
    pub(crate) enumerators: Vec<(u32, String)>,
}

/// Where a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context<'a> {
    /// In a directive (a `#define`'s continuation lines included).
    Directive(&'a Directive),
    /// In a top-level item.
    Item(&'a Item),
    /// Between items.
    FileScope,
}

/// The scan of one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scan {
    /// For each line (index 0 is line 1): whether it holds anything but white space and
    /// comments.
    pub(crate) has_code: Vec<bool>,
    /// Directives, by first line.
    pub(crate) directives: Vec<Directive>,
    /// Top-level items, by first line; they do not overlap.
    pub(crate) items: Vec<Item>,
    /// Identifiers outside comments and literals: line and byte range in the text.
    pub(crate) idents: Vec<(u32, u32, u32)>,
}

/// Attributes and annotations that sit where a name could: never taken as one.
const ANNOTATIONS: &[&str] = &[
    "__attribute__",
    "__attribute",
    "__section",
    "__aligned",
    "__printf",
    "__scanf",
    "__must_hold",
    "__acquires",
    "__releases",
    "__cond_acquires",
    "__diag_ignore",
    "__initdata",
    "__initconst",
    "__exitdata",
    "__read_mostly",
    "__ro_after_init",
    "__maybe_unused",
    "__always_unused",
    "__used",
    "__refdata",
    "__cacheline_aligned",
    "__cacheline_aligned_in_smp",
    "__page_aligned_data",
    "__page_aligned_bss",
    "__meminitdata",
    "__percpu",
    "__rcu",
    "__iomem",
    "__user",
    "__weak",
    "__visible",
    "__nosavedata",
    "__lsm_ro_after_init",
    "__initdata_memblock",
    "__bss_decrypted",
    "__randomize_layout",
    "__packed",
];

/// Type words and qualifiers that start a declaration but are not its name.
const KEYWORDS: &[&str] = &[
    "static", "const", "volatile", "extern", "inline", "typedef", "struct", "union", "enum",
    "unsigned", "signed", "int", "char", "long", "short", "void", "bool", "float", "double",
    "register", "restrict",
];

#[derive(Debug, Clone, Copy)]
enum Tok {
    Ident(u32, u32),
    Punct(u8),
}

struct Open {
    kind: ItemKind,
    name: String,
    first: u32,
    is_enum: bool,
    /// The body's closing brace was seen; the item ends at the next `;` (a type or an
    /// initialiser) and the identifiers before it may name it.
    closed: bool,
    enumerators: Vec<(u32, String)>,
    expect_enumerator: bool,
}

/// The most head tokens kept for naming an item: a head is a few words.
const HEAD_LIMIT: usize = 256;

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn directive_kind(word: &[u8]) -> DirectiveKind {
    match word {
        b"define" => DirectiveKind::Define,
        b"undef" => DirectiveKind::Undef,
        b"if" => DirectiveKind::If,
        b"ifdef" => DirectiveKind::Ifdef,
        b"ifndef" => DirectiveKind::Ifndef,
        b"elif" => DirectiveKind::Elif,
        b"else" => DirectiveKind::Else,
        b"endif" => DirectiveKind::Endif,
        b"include" | b"include_next" => DirectiveKind::Include,
        _ => DirectiveKind::Other,
    }
}

/// Scans a file's bytes.
pub(crate) fn scan(text: &[u8]) -> Scan {
    Scanner::new(text).run()
}

struct Scanner<'t> {
    text: &'t [u8],
    out: Scan,
    line: u32,
    at_line_start: bool,
    /// The directive being read, and whether its word and name are still to come.
    directive: Option<(Directive, u8)>,
    depth: u32,
    paren: u32,
    head: Vec<Tok>,
    head_first: Option<u32>,
    open: Option<Open>,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t [u8]) -> Scanner<'t> {
        Scanner {
            text,
            out: Scan::default(),
            line: 1,
            at_line_start: true,
            directive: None,
            depth: 0,
            paren: 0,
            head: Vec::new(),
            head_first: None,
            open: None,
        }
    }

    fn mark_code(&mut self) {
        let index = self.line as usize - 1;
        if self.out.has_code.len() <= index {
            self.out.has_code.resize(index + 1, false);
        }
        self.out.has_code[index] = true;
    }

    fn newline(&mut self, continued: bool) {
        if !continued {
            if let Some((directive, _)) = self.directive.take() {
                self.out.directives.push(Directive {
                    last: self.line,
                    ..directive
                });
            }
            self.at_line_start = true;
        }
        self.line = self.line.saturating_add(1);
    }

    fn run(mut self) -> Scan {
        let text = self.text;
        let mut i = 0;
        while i < text.len() {
            let b = text[i];
            match b {
                b'\n' => {
                    let continued = i > 0 && text[i - 1] == b'\\'
                        || (i > 1 && text[i - 1] == b'\r' && text[i - 2] == b'\\');
                    self.newline(continued);
                    i += 1;
                }
                b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c' => i += 1,
                b'/' if text.get(i + 1) == Some(&b'*') => {
                    i += 2;
                    while i < text.len() && !(text[i] == b'*' && text.get(i + 1) == Some(&b'/')) {
                        if text[i] == b'\n' {
                            // A comment inside a directive does not end it.
                            let in_directive = self.directive.is_some();
                            self.line = self.line.saturating_add(1);
                            if !in_directive {
                                self.at_line_start = true;
                            }
                        }
                        i += 1;
                    }
                    i = (i + 2).min(text.len());
                }
                b'/' if text.get(i + 1) == Some(&b'/') => {
                    while i < text.len() && text[i] != b'\n' {
                        i += 1;
                    }
                }
                b'#' if self.at_line_start && self.directive.is_none() => {
                    self.mark_code();
                    self.at_line_start = false;
                    self.directive = Some((
                        Directive {
                            kind: DirectiveKind::Other,
                            name: None,
                            first: self.line,
                            last: self.line,
                        },
                        0,
                    ));
                    i += 1;
                }
                b'"' | b'\'' => {
                    self.mark_code();
                    self.at_line_start = false;
                    i += 1;
                    // A literal ends at its quote or, unterminated (an apostrophe in an
                    // `#error`), at the end of the line.
                    while i < text.len() && text[i] != b && text[i] != b'\n' {
                        i += if text[i] == b'\\' { 2 } else { 1 };
                    }
                    if i < text.len() && text[i] == b {
                        i += 1;
                    }
                    if self.directive.is_none() {
                        self.token(Tok::Punct(b'"'));
                    }
                }
                _ if is_ident_start(b) => {
                    let start = i;
                    while i < text.len() && is_ident_byte(text[i]) {
                        i += 1;
                    }
                    self.mark_code();
                    self.at_line_start = false;
                    self.ident(start, i);
                }
                b'0'..=b'9' => {
                    // A number, with any suffix or hex digits: no identifier inside.
                    while i < text.len() && (is_ident_byte(text[i]) || text[i] == b'.') {
                        i += 1;
                    }
                    self.mark_code();
                    self.at_line_start = false;
                    if self.directive.is_none() {
                        self.token(Tok::Punct(b'0'));
                    }
                }
                _ => {
                    self.mark_code();
                    let column0 = i == 0 || text[i - 1] == b'\n';
                    self.at_line_start = false;
                    if self.directive.is_none() {
                        self.punct(b, column0);
                    }
                    i += 1;
                }
            }
        }
        if let Some((directive, _)) = self.directive.take() {
            self.out.directives.push(Directive {
                last: self.line,
                ..directive
            });
        }
        if let Some(open) = self.open.take() {
            // An item still open at the end of the file runs to its last line.
            let last = self.line;
            self.close(open, last);
        }
        // A final newline ends the last line rather than starting one.
        let lines = if text.is_empty() || text.ends_with(b"\n") {
            self.line as usize - 1
        } else {
            self.line as usize
        };
        self.out.has_code.resize(lines, false);
        self.out
    }

    fn ident(&mut self, start: usize, end: usize) {
        let (s, e) = (start as u32, end as u32);
        if let Some((directive, stage)) = &mut self.directive {
            let word = &self.text[start..end];
            match stage {
                0 => {
                    directive.kind = directive_kind(word);
                    *stage = 1;
                    // The directive's own word is no identifier of the program.
                    return;
                }
                1 => {
                    if matches!(
                        directive.kind,
                        DirectiveKind::Define
                            | DirectiveKind::Undef
                            | DirectiveKind::Ifdef
                            | DirectiveKind::Ifndef
                    ) {
                        directive.name = Some(String::from_utf8_lossy(word).into_owned());
                    }
                    *stage = 2;
                }
                _ => {}
            }
            self.out.idents.push((self.line, s, e));
            return;
        }
        self.out.idents.push((self.line, s, e));
        self.token(Tok::Ident(s, e));
    }

    fn punct(&mut self, b: u8, column0: bool) {
        match b {
            b'{' => {
                if self.depth == 0 && self.paren == 0 {
                    self.start_body();
                } else if let Some(open) = &mut self.open {
                    if self.depth == 1 && open.is_enum {
                        open.expect_enumerator = false;
                    }
                }
                self.depth = self.depth.saturating_add(1);
            }
            b'}' => {
                if column0 && self.depth > 1 {
                    self.depth = 1;
                }
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    self.paren = 0;
                    if let Some(open) = &mut self.open {
                        if open.kind == ItemKind::Function {
                            if let Some(open) = self.open.take() {
                                let line = self.line;
                                self.close(open, line);
                            }
                        } else {
                            open.closed = true;
                        }
                    }
                }
            }
            b';' if self.depth == 0 => {
                if let Some(open) = self.open.take() {
                    let line = self.line;
                    self.close(open, line);
                } else if self.paren == 0 {
                    self.statement();
                }
            }
            b',' if self.depth == 1 => {
                if let Some(open) = &mut self.open {
                    open.expect_enumerator = open.is_enum;
                }
            }
            _ => {
                if self.depth == 0 {
                    match b {
                        b'(' => self.paren = self.paren.saturating_add(1),
                        b')' => self.paren = self.paren.saturating_sub(1),
                        _ => {}
                    }
                    self.token(Tok::Punct(b));
                }
            }
        }
    }

    fn token(&mut self, tok: Tok) {
        if self.depth > 0 {
            if let (Tok::Ident(s, e), Some(open)) = (tok, &mut self.open) {
                if self.depth == 1 && open.is_enum && open.expect_enumerator {
                    let name = String::from_utf8_lossy(&self.text[s as usize..e as usize]);
                    open.enumerators.push((self.line, name.into_owned()));
                    open.expect_enumerator = false;
                }
            }
            return;
        }
        if let Some(open) = &mut self.open {
            if open.closed {
                // `} name;` after a type or an initialiser: an anonymous type takes it.
                if let Tok::Ident(s, e) = tok {
                    if open.name.ends_with("(anonymous)") {
                        open.name = String::from_utf8_lossy(&self.text[s as usize..e as usize])
                            .into_owned();
                    }
                }
                return;
            }
        }
        if self.head_first.is_none() {
            self.head_first = Some(self.line);
        }
        if self.head.len() < HEAD_LIMIT {
            self.head.push(tok);
        }
    }

    fn word(&self, s: u32, e: u32) -> &'t [u8] {
        &self.text[s as usize..e as usize]
    }

    fn start_body(&mut self) {
        if let Some(open) = self.open.take() {
            // A `{` after a closed type before its `;`: the type ends where this begins.
            let line = self.line;
            self.close(open, line);
        }
        let first = self.head_first.unwrap_or(self.line);
        let (kind, name, is_enum) = self.classify(true);
        self.open = Some(Open {
            kind,
            name,
            first,
            is_enum,
            closed: false,
            enumerators: Vec::new(),
            expect_enumerator: is_enum,
        });
        self.head.clear();
        self.head_first = None;
    }

    fn statement(&mut self) {
        if self.head.is_empty() {
            return;
        }
        let first = self.head_first.unwrap_or(self.line);
        let (kind, name, _) = self.classify(false);
        self.out.items.push(Item {
            kind,
            name,
            first,
            last: self.line,
            enumerators: Vec::new(),
        });
        self.head.clear();
        self.head_first = None;
    }

    fn close(&mut self, open: Open, last: u32) {
        self.out.items.push(Item {
            kind: open.kind,
            name: open.name,
            first: open.first,
            last,
            enumerators: open.enumerators,
        });
        self.head.clear();
        self.head_first = None;
    }

    fn text_of(&self, tok: Tok) -> String {
        match tok {
            Tok::Ident(s, e) => String::from_utf8_lossy(self.word(s, e)).into_owned(),
            Tok::Punct(p) => char::from(p).to_string(),
        }
    }

    /// What the head before a `{` (`body`) or a `;` declares, and its name.
    fn classify(&self, body: bool) -> (ItemKind, String, bool) {
        let head = &self.head;
        // Each token's parenthesis and bracket depth inside the head.
        let mut depths = Vec::with_capacity(head.len());
        let mut depth = 0i32;
        for tok in head {
            if let Tok::Punct(b')' | b']') = tok {
                depth -= 1;
            }
            depths.push(depth);
            if let Tok::Punct(b'(' | b'[') = tok {
                depth += 1;
            }
        }
        let is_word = |i: usize, word: &[u8]| matches!(head.get(i), Some(Tok::Ident(s, e)) if self.word(*s, *e) == word);
        let followed_by_paren = |i: usize| matches!(head.get(i + 1), Some(Tok::Punct(b'(')));
        let plain_name = |i: usize| match head[i] {
            Tok::Ident(s, e) => {
                let word = self.word(s, e);
                !ANNOTATIONS.iter().any(|a| a.as_bytes() == word)
                    && !KEYWORDS.iter().any(|k| k.as_bytes() == word)
            }
            Tok::Punct(_) => false,
        };
        let first_word = (0..head.len()).find(|&i| {
            !(is_word(i, b"static")
                || is_word(i, b"const")
                || is_word(i, b"volatile")
                || is_word(i, b"typedef"))
        });
        let aggregate = first_word.and_then(|i| {
            ["struct", "union", "enum"]
                .into_iter()
                .find(|k| is_word(i, k.as_bytes()))
                .map(|k| (i, k))
        });
        let typedef = is_word(0, b"typedef") || (0..head.len()).any(|i| is_word(i, b"typedef"));
        let equals =
            (0..head.len()).find(|&i| depths[i] == 0 && matches!(head[i], Tok::Punct(b'=')));
        if let Some(eq) = equals {
            let name = (0..eq)
                .rev()
                .find(|&i| depths[i] == 0 && plain_name(i) && !followed_by_paren(i))
                .or_else(|| (0..eq).rev().find(|&i| plain_name(i)))
                .map(|i| self.text_of(head[i]))
                .unwrap_or_default();
            return (ItemKind::Data { initialised: true }, name, false);
        }
        let call = (0..head.len()).find(|&i| {
            depths[i] == 0
                && followed_by_paren(i)
                && plain_name(i)
                && !matches!(head[i], Tok::Ident(s, e) if self.word(s, e).starts_with(b"__attribute"))
        });
        if typedef {
            let name = (0..head.len())
                .rev()
                .find(|&i| depths[i] == 0 && plain_name(i))
                .map(|i| self.text_of(head[i]))
                .unwrap_or_default();
            if body {
                if let Some((i, keyword)) = aggregate {
                    return (
                        ItemKind::Type,
                        self.aggregate_name(i, keyword),
                        keyword == "enum",
                    );
                }
            }
            return (ItemKind::Type, name, false);
        }
        if let Some(i) = call {
            let callee = self.text_of(head[i]);
            let upper = callee
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            // The first word inside the parentheses: a macro's first argument.
            let argument = head[i + 1..]
                .iter()
                .find_map(|t| matches!(t, Tok::Ident(..)).then(|| self.text_of(*t)));
            if body {
                let name = match (upper, argument) {
                    (true, Some(argument)) => format!("{callee}({argument})"),
                    _ => callee,
                };
                return (ItemKind::Function, name, false);
            }
            if upper && (callee.starts_with("DEFINE_") || callee.ends_with("_HEAD")) {
                // `DEFINE_MUTEX(name)`, `LIST_HEAD(name)`: a variable with its
                // initialiser; `DEFINE_PER_CPU(type, name)` names it last.
                let inside: Vec<String> = head[i + 1..]
                    .iter()
                    .filter(|t| matches!(t, Tok::Ident(..)))
                    .map(|t| self.text_of(*t))
                    .collect();
                let name = if callee.starts_with("DEFINE_PER_CPU") {
                    inside.last().cloned()
                } else {
                    inside.first().cloned()
                };
                return (
                    ItemKind::Data { initialised: true },
                    name.unwrap_or_default(),
                    false,
                );
            }
            return (ItemKind::Declaration, callee, false);
        }
        if let Some((i, keyword)) = aggregate {
            if body {
                return (
                    ItemKind::Type,
                    self.aggregate_name(i, keyword),
                    keyword == "enum",
                );
            }
            let words = head.iter().filter(|t| matches!(t, Tok::Ident(..))).count();
            if words <= 2 {
                return (
                    ItemKind::Declaration,
                    self.aggregate_name(i, keyword),
                    false,
                );
            }
        }
        if body {
            return (ItemKind::Other, String::new(), false);
        }
        if is_word(0, b"extern") {
            return (ItemKind::Declaration, String::new(), false);
        }
        let name = (0..head.len())
            .rev()
            .find(|&i| depths[i] == 0 && plain_name(i))
            .map(|i| self.text_of(head[i]))
            .unwrap_or_default();
        (ItemKind::Data { initialised: false }, name, false)
    }

    /// `struct foo` for the head token `keyword` at `i`, or `struct (anonymous)`.
    fn aggregate_name(&self, i: usize, keyword: &str) -> String {
        match self.head.get(i + 1) {
            Some(Tok::Ident(s, e))
                if !ANNOTATIONS
                    .iter()
                    .any(|a| a.as_bytes() == self.word(*s, *e)) =>
            {
                format!("{keyword} {}", String::from_utf8_lossy(self.word(*s, *e)))
            }
            _ => format!("{keyword} (anonymous)"),
        }
    }
}

impl Scan {
    /// Whether `line` holds anything but white space and comments.
    pub(crate) fn line_has_code(&self, line: u32) -> bool {
        line >= 1
            && self
                .has_code
                .get(line as usize - 1)
                .copied()
                .unwrap_or(false)
    }

    /// Where `line` is.
    pub(crate) fn context(&self, line: u32) -> Context<'_> {
        let d = self.directives.partition_point(|d| d.first <= line);
        if let Some(directive) = d.checked_sub(1).map(|d| &self.directives[d]) {
            if directive.last >= line {
                return Context::Directive(directive);
            }
        }
        let i = self.items.partition_point(|item| item.first <= line);
        if let Some(item) = i.checked_sub(1).map(|i| &self.items[i]) {
            if item.last >= line {
                return Context::Item(item);
            }
        }
        Context::FileScope
    }

    /// The item holding `line`, ignoring directives (a `#ifdef` inside a function body
    /// is part of the function).
    pub(crate) fn item_at(&self, line: u32) -> Option<&Item> {
        let i = self.items.partition_point(|item| item.first <= line);
        i.checked_sub(1)
            .map(|i| &self.items[i])
            .filter(|item| item.last >= line)
    }

    /// The lines where the identifier `name` occurs, ascending, with duplicates removed.
    pub(crate) fn lines_using(&self, text: &[u8], name: &str) -> Vec<u32> {
        let mut lines: Vec<u32> = self
            .idents
            .iter()
            .filter(|&&(_, s, e)| text.get(s as usize..e as usize) == Some(name.as_bytes()))
            .map(|&(line, _, _)| line)
            .collect();
        lines.dedup();
        lines
    }

    /// The distinct identifiers of the file.
    pub(crate) fn identifiers<'a>(&'a self, text: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.idents
            .iter()
            .filter_map(move |&(_, s, e)| text.get(s as usize..e as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(ItemKind, String, u32, u32)> {
        scan(text.as_bytes())
            .items
            .into_iter()
            .map(|i| (i.kind, i.name, i.first, i.last))
            .collect()
    }

    #[test]
    fn functions_types_and_data_are_told_apart() {
        let text = "#include <linux/x.h>\n\
                    #define A(x) \\\n\t((x) + 1)\n\
                    static int limit = 4;\n\
                    struct foo {\n\tint a; /* { */\n\tchar *s;\n};\n\
                    static __latent_entropy struct task_struct *copy_process(\n\tstruct pid *pid,\n\tint trace)\n{\n\tif (x) {\n\t\ty(\"}\");\n\t}\n}\n\
                    int f(int);\n\
                    static DEFINE_MUTEX(lock);\n\
                    static const struct file_operations fops = {\n\t.open = f,\n};\n\
                    enum color { RED, GREEN = 3,\n\tBLUE };\n\
                    SYSCALL_DEFINE0(fork)\n{\n\treturn 0;\n}\n";
        assert_eq!(
            kinds(text),
            [
                (ItemKind::Data { initialised: true }, "limit".into(), 4, 4),
                (ItemKind::Type, "struct foo".into(), 5, 8),
                (ItemKind::Function, "copy_process".into(), 9, 16),
                (ItemKind::Declaration, "f".into(), 17, 17),
                (ItemKind::Data { initialised: true }, "lock".into(), 18, 18),
                (ItemKind::Data { initialised: true }, "fops".into(), 19, 21),
                (ItemKind::Type, "enum color".into(), 22, 23),
                (ItemKind::Function, "SYSCALL_DEFINE0(fork)".into(), 24, 27),
            ]
        );
        let scan = scan(text.as_bytes());
        assert_eq!(
            scan.directives
                .iter()
                .map(|d| (d.kind, d.name.clone(), d.first, d.last))
                .collect::<Vec<_>>(),
            [
                (DirectiveKind::Include, None, 1, 1),
                (DirectiveKind::Define, Some("A".into()), 2, 3),
            ]
        );
        assert_eq!(
            scan.items[6].enumerators,
            [
                (22, "RED".into()),
                (22, "GREEN".into()),
                (23, "BLUE".into())
            ]
        );
        assert!(matches!(scan.context(3), Context::Directive(d) if d.name.as_deref() == Some("A")));
        assert!(matches!(scan.context(12), Context::Item(i) if i.name == "copy_process"));
        // The brace in the comment and the one in the string are not counted.
        assert_eq!(scan.lines_using(text.as_bytes(), "y"), [14]);
    }

    #[test]
    fn a_brace_in_column_one_closes_what_an_ifdef_left_open() {
        let text = "#ifdef A\nint f(int a) {\n#else\nint f(void) {\n#endif\n\treturn 0;\n}\nint g(void)\n{\n\treturn 1;\n}\n";
        assert_eq!(
            kinds(text),
            [
                (ItemKind::Function, "f".into(), 2, 7),
                (ItemKind::Function, "g".into(), 8, 11)
            ]
        );
    }

    #[test]
    fn debian_kernel_files_scan_into_their_functions() {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/debian-6.1.192/");
        for (path, line, function) in [
            ("kernel/fork.c", 2105, "copy_process"),
            ("kernel/fork.c", 2600, "copy_process"),
            ("kernel/fork.c", 2737, "kernel_clone"),
            ("kernel/fork.c", 2782, "kernel_clone"),
            ("kernel/exit.c", 814, "do_exit"),
            ("kernel/exit.c", 893, "do_exit"),
            ("fs/proc/array.c", 400, "task_context_switch_counts"),
            ("fs/proc/array.c", 453, "proc_pid_status"),
        ] {
            let text = std::fs::read(format!("{data}{path}")).unwrap();
            let scanned = scan(&text);
            let item = scanned
                .item_at(line)
                .unwrap_or_else(|| panic!("{path}:{line}"));
            assert_eq!(
                (item.kind, item.name.as_str()),
                (ItemKind::Function, function),
                "{path}:{line}"
            );
        }
    }

    #[test]
    fn comments_and_blank_lines_hold_no_code() {
        let scan = scan(b"/*\n * x\n */\n\nint a;\n// y\n");
        assert_eq!(scan.has_code, [false, false, false, false, true, false]);
    }
}
