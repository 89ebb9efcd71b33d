//! Changes a live patch handles badly or not at all, found in the diff itself, after the
//! kpatch patch author guide. Each finding names the file and line (new side for added
//! code, old side for removed code) and says why it matters.
//!
//! These are checks on the text of the fix: they flag what a reviewer must look at and
//! cannot prove the absence of a problem.

use crate::patch::{FileDiff, HunkLine, LineKind, Patch};
use serde::{Deserialize, Serialize};

/// What kind of pitfall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PitfallKind {
    /// A struct, union or enum member changes: existing instances keep the old layout.
    DataStructure,
    /// File-scope data is added or changed: the patch module gets its own copy.
    GlobalData,
    /// A `static` local variable in a changed function: the new function gets a new one.
    StaticLocal,
    /// `*_ONCE` / `*_once`: the "already happened" state starts afresh in the new code.
    OnceMacro,
    /// `__init` / `__exit` code or data: init code has run already and is gone.
    InitExit,
    /// A header changes: every includer may be affected.
    Header,
    /// `SYSCALL_DEFINE`: the system call wrappers, not the body, are the symbols.
    SyscallDefine,
    /// Jump labels, static keys, static calls: their sites are patched by the kernel too.
    JumpLabel,
    /// The signature of an exported function changes: other modules call the old one.
    ExportedSignature,
    /// An assembly file: not replaceable through livepatch.
    Assembly,
    /// Line numbers shift: `__LINE__` in `BUG()` / `WARN()` below changes too.
    LineShift,
}

/// The kpatch patch author guide, whose sections the pitfalls link to.
pub const PATCH_AUTHOR_GUIDE: &str =
    "https://github.com/dynup/kpatch/blob/master/doc/patch-author-guide.md";

impl PitfallKind {
    /// Every kind.
    pub const ALL: [PitfallKind; 11] = [
        PitfallKind::DataStructure,
        PitfallKind::GlobalData,
        PitfallKind::StaticLocal,
        PitfallKind::OnceMacro,
        PitfallKind::InitExit,
        PitfallKind::Header,
        PitfallKind::SyscallDefine,
        PitfallKind::JumpLabel,
        PitfallKind::ExportedSignature,
        PitfallKind::Assembly,
        PitfallKind::LineShift,
    ];

    /// Its name in the JSON form (`data-structure`).
    pub fn name(self) -> &'static str {
        match self {
            PitfallKind::DataStructure => "data-structure",
            PitfallKind::GlobalData => "global-data",
            PitfallKind::StaticLocal => "static-local",
            PitfallKind::OnceMacro => "once-macro",
            PitfallKind::InitExit => "init-exit",
            PitfallKind::Header => "header",
            PitfallKind::SyscallDefine => "syscall-define",
            PitfallKind::JumpLabel => "jump-label",
            PitfallKind::ExportedSignature => "exported-signature",
            PitfallKind::Assembly => "assembly",
            PitfallKind::LineShift => "line-shift",
        }
    }

    /// The kind named `name` ([`PitfallKind::name`]).
    pub fn parse(name: &str) -> Option<PitfallKind> {
        PitfallKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Why it matters for a live patch, in one sentence.
    pub fn why_it_matters(self) -> &'static str {
        match self {
            PitfallKind::DataStructure => {
                "Structures already in memory keep their old layout: a live patch cannot change them in place (shadow variables can add to them)."
            }
            PitfallKind::GlobalData => {
                "The patch module gets its own copy of new or changed global data; the running kernel keeps using the old one."
            }
            PitfallKind::StaticLocal => {
                "The replacement function gets a fresh static variable, not the running kernel's, unless it is referred to explicitly."
            }
            PitfallKind::OnceMacro => {
                "A once-only state starts afresh in the replacement: the once-only thing may happen again."
            }
            PitfallKind::InitExit => {
                "Init code ran at boot and was freed: changing it changes nothing in a running kernel."
            }
            PitfallKind::Header => {
                "Every function that inlines code from this header must be replaced, wherever it was compiled."
            }
            PitfallKind::SyscallDefine => {
                "SYSCALL_DEFINE generates wrapper functions: those are the symbols to replace, not the body's name."
            }
            PitfallKind::JumpLabel => {
                "Jump labels and static calls in a patch module need the kernel's special-section handling to work."
            }
            PitfallKind::ExportedSignature => {
                "Other modules were built against the old signature and keep calling it that way."
            }
            PitfallKind::Assembly => {
                "Assembly has no ftrace entries: livepatch cannot redirect it."
            }
            PitfallKind::LineShift => {
                "Code below moves: __LINE__ in BUG() and WARN() of unchanged functions changes, which makes them changed functions too."
            }
        }
    }

    /// The section of the kpatch patch author guide on it: (title, anchor).
    pub fn guide_section(self) -> (&'static str, &'static str) {
        match self {
            PitfallKind::DataStructure | PitfallKind::GlobalData => {
                ("Data structure changes", "data-structure-changes")
            }
            PitfallKind::StaticLocal => (
                "Removing references to static local variables",
                "removing-references-to-static-local-variables",
            ),
            PitfallKind::OnceMacro => ("Once macros", "once-macros"),
            PitfallKind::InitExit => ("Init code changes", "init-code-changes"),
            PitfallKind::Header => ("Header file changes", "header-file-changes"),
            PitfallKind::SyscallDefine => ("System calls", "system-calls"),
            PitfallKind::JumpLabel => (
                "Jump labels and static calls",
                "jump-labels-and-static-calls",
            ),
            PitfallKind::ExportedSignature => {
                ("Exported symbol versioning", "exported-symbol-versioning")
            }
            PitfallKind::Assembly => ("Patch analysis", "patch-analysis"),
            PitfallKind::LineShift => (
                "Dealing with unexpected changed functions",
                "dealing-with-unexpected-changed-functions",
            ),
        }
    }

    /// The address of [`PitfallKind::guide_section`].
    pub fn guide_url(self) -> String {
        format!("{PATCH_AUTHOR_GUIDE}#{}", self.guide_section().1)
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pitfall {
    /// What kind.
    pub kind: PitfallKind,
    /// Tree-relative path.
    pub path: String,
    /// Line (new side for added lines, old side otherwise).
    pub line: u32,
    /// What was seen and why it matters.
    pub detail: String,
}

const ONCE_MARKERS: [&str; 7] = [
    "_ONCE(",
    "_once(",
    "DO_ONCE(",
    "printk_once(",
    "_ratelimited(",
    "WARN_ON_ONCE(",
    "DEFINE_STATIC_KEY",
];
const JUMP_LABEL_MARKERS: [&str; 8] = [
    "static_branch_",
    "static_key_",
    "DEFINE_STATIC_KEY",
    "DECLARE_STATIC_KEY",
    "static_call(",
    "DEFINE_STATIC_CALL",
    "static_call_update(",
    "jump_label",
];
const INIT_MARKERS: [&str; 8] = [
    "__init",
    "__exit",
    "__initdata",
    "__initconst",
    "module_init(",
    "module_exit(",
    "late_initcall(",
    "core_initcall(",
];

/// Checks a parsed fix.
pub fn check(patch: &Patch) -> Vec<Pitfall> {
    let mut found = Vec::new();
    for file in &patch.files {
        check_file(file, &mut found);
    }
    found.sort_by(|a, b| (&a.path, a.line, a.kind).cmp(&(&b.path, b.line, b.kind)));
    found.dedup_by(|a, b| a.path == b.path && a.line == b.line && a.kind == b.kind);
    found
}

fn line_no(line: &HunkLine) -> u32 {
    line.new_line.or(line.old_line).unwrap_or(0)
}

fn changed(line: &HunkLine) -> bool {
    line.kind != LineKind::Context
}

fn check_file(file: &FileDiff, found: &mut Vec<Pitfall>) {
    let path = file.path().to_owned();
    let mut push = |kind, line: u32, detail: String| {
        found.push(Pitfall {
            kind,
            path: path.clone(),
            line,
            detail,
        })
    };
    let first_change = file
        .hunks
        .iter()
        .flat_map(|h| &h.lines)
        .find(|l| changed(l))
        .map_or(0, line_no);
    if path.ends_with(".h") && !file.hunks.is_empty() {
        push(
            PitfallKind::Header,
            first_change,
            "a header changes: every file that includes it may hold changed inline code".into(),
        );
    }
    if path.ends_with(".S") || path.ends_with(".s") {
        push(
            PitfallKind::Assembly,
            first_change,
            "an assembly file changes: its code has no ftrace entries and cannot be replaced"
                .into(),
        );
        return;
    }
    let mut shift: i64 = 0;
    for hunk in &file.hunks {
        if shift != 0 {
            push(
                PitfallKind::LineShift,
                hunk.old_start,
                format!(
                    "lines from here on move by {shift:+}: BUG(), WARN() and anything else using __LINE__ in unchanged functions below changes too"
                ),
            );
        }
        check_hunk_lines(&hunk.lines, &hunk.section, &mut push);
        // Each term fits easily (two u32 counts); the sum over many hunks saturates rather
        // than wrap, though an input of any accepted size is far from it.
        shift = shift.saturating_add(i64::from(hunk.new_lines) - i64::from(hunk.old_lines));
    }
}

fn check_hunk_lines(
    lines: &[HunkLine],
    section: &str,
    push: &mut impl FnMut(PitfallKind, u32, String),
) {
    // Which aggregate definition, if any, each line sits in: `struct x {` opened in the
    // hunk (or named by the hunk's section heading) until its closing brace.
    let mut aggregate: Option<(String, i32)> = aggregate_opener(section).map(|name| (name, 1));
    let mut in_function = section.contains('(') && aggregate.is_none();
    for line in lines {
        let text = line.text.as_str();
        let trimmed = text.trim();
        let at_file_scope = !text.starts_with([' ', '\t']) && !text.is_empty();
        if let Some(name) = aggregate_opener(text) {
            aggregate = Some((name, 0));
        }
        if at_file_scope && trimmed.contains('(') && !trimmed.ends_with(';') && aggregate.is_none()
        {
            in_function = true;
        }
        if changed(line) {
            let n = line_no(line);
            if let Some((name, _)) = &aggregate {
                if !trimmed.is_empty() && !trimmed.starts_with("/*") && !trimmed.starts_with('*') {
                    push(
                        PitfallKind::DataStructure,
                        n,
                        format!("a member of {name} changes: instances in memory keep the old layout (use shadow variables)"),
                    );
                }
            } else if at_file_scope && looks_like_data(trimmed) {
                push(
                    PitfallKind::GlobalData,
                    n,
                    "file-scope data changes: the patch module would get a new, separate copy"
                        .into(),
                );
            }
            if in_function
                && text.starts_with([' ', '\t'])
                && trimmed.starts_with("static ")
                && !trimmed.contains('(')
            {
                push(
                    PitfallKind::StaticLocal,
                    n,
                    "a static local variable: the replacement function gets a new one, not the running kernel's".into(),
                );
            }
            if let Some(marker) = ONCE_MARKERS.iter().find(|m| text.contains(*m)) {
                push(
                    PitfallKind::OnceMacro,
                    n,
                    format!(
                        "`{}`: its once-only state starts afresh in the replacement",
                        marker.trim_end_matches('(')
                    ),
                );
            }
            if let Some(marker) = INIT_MARKERS.iter().find(|m| contains_word(text, m)) {
                push(
                    PitfallKind::InitExit,
                    n,
                    format!(
                        "`{}` code or data: init code has already run and been freed",
                        marker.trim_end_matches('(')
                    ),
                );
            }
            if text.contains("SYSCALL_DEFINE") {
                push(
                    PitfallKind::SyscallDefine,
                    n,
                    "SYSCALL_DEFINE: replace the __do_sys_ / __se_sys_ functions it generates"
                        .into(),
                );
            }
            if let Some(marker) = JUMP_LABEL_MARKERS.iter().find(|m| text.contains(*m)) {
                push(
                    PitfallKind::JumpLabel,
                    n,
                    format!("`{}`: jump labels and static calls in a patch module need the kernel's special-section handling", marker.trim_end_matches('(')),
                );
            }
            if trimmed.starts_with("EXPORT_SYMBOL") {
                push(
                    PitfallKind::ExportedSignature,
                    n,
                    "an export changes: other modules bind to the old symbol and signature".into(),
                );
            }
        }
        if let Some((_, depth)) = &mut aggregate {
            *depth += brace_delta(text);
            if *depth <= 0 && text.contains('}') {
                aggregate = None;
            }
        }
        if at_file_scope && trimmed.starts_with('}') {
            in_function = false;
        }
    }
}

/// A function whose declared signature (return type, name or parameters) a fix changes:
/// a changed line inside the header of a definition or prototype at file scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureChange {
    /// Tree-relative path.
    pub path: String,
    /// The first changed line of the header (new side for added lines).
    pub line: u32,
    /// The function.
    pub function: String,
}

/// Every function whose signature the fix changes. Whether that matters beyond the
/// patch (an exported function) is for the caller to decide with the symbol table.
pub fn signature_changes(patch: &Patch) -> Vec<SignatureChange> {
    let mut found: Vec<SignatureChange> = Vec::new();
    for file in &patch.files {
        if !(file.path().ends_with(".c") || file.path().ends_with(".h")) {
            continue;
        }
        for hunk in &file.hunks {
            // Each side of the hunk on its own: the old header and the new one.
            for side in [LineKind::Removed, LineKind::Added] {
                let lines: Vec<&HunkLine> = hunk
                    .lines
                    .iter()
                    .filter(|l| l.kind == LineKind::Context || l.kind == side)
                    .collect();
                let mut i = 0;
                while i < lines.len() {
                    let Some(name) = function_header_name(&lines[i].text) else {
                        i += 1;
                        continue;
                    };
                    // The header runs until its parentheses close.
                    let mut depth = 0i32;
                    let mut end = i;
                    for (j, line) in lines.iter().enumerate().skip(i) {
                        depth += line.text.matches('(').count() as i32;
                        depth -= line.text.matches(')').count() as i32;
                        end = j;
                        if depth <= 0 {
                            break;
                        }
                    }
                    if let Some(changed_line) = lines[i..=end].iter().find(|l| changed(l)) {
                        let already = found
                            .iter()
                            .any(|f| f.path == file.path() && f.function == name);
                        if !already {
                            found.push(SignatureChange {
                                path: file.path().to_owned(),
                                line: line_no(changed_line),
                                function: name,
                            });
                        }
                    }
                    i = end + 1;
                }
            }
        }
    }
    found
}

/// The function a file-scope line declares or defines: `static int foo(int a,` gives
/// `foo`. Macros, calls in initialisers and control statements give nothing.
fn function_header_name(text: &str) -> Option<String> {
    if text.starts_with([' ', '\t', '#', '/', '*', '}', '{']) || text.is_empty() {
        return None;
    }
    let open = text.find('(')?;
    let before = text[..open].trim_end();
    if before.contains('=') || before.is_empty() {
        return None;
    }
    let name: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    // A declaration has a type before the name; an all-caps word alone is a macro call
    // (EXPORT_SYMBOL, SYSCALL_DEFINE3, module_init).
    let has_type = before.len() > name.len();
    let macro_like = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if name.is_empty() || !has_type || macro_like || name.starts_with(|c: char| c.is_ascii_digit())
    {
        return None;
    }
    Some(name)
}

/// `struct foo {`, `union bar {`, `enum baz {` (possibly `typedef struct ... {`).
fn aggregate_opener(text: &str) -> Option<String> {
    let trimmed = text.trim_start().trim_start_matches("typedef ");
    let keyword = ["struct ", "union ", "enum "]
        .into_iter()
        .find(|k| trimmed.starts_with(k))?;
    if !trimmed.trim_end().ends_with('{') || trimmed.contains('(') || trimmed.contains('=') {
        return None;
    }
    let name = trimmed[keyword.len()..].trim_end_matches('{').trim();
    Some(format!(
        "{}{}",
        keyword,
        if name.is_empty() { "(anonymous)" } else { name }
    ))
}

fn brace_delta(text: &str) -> i32 {
    text.chars()
        .map(|c| match c {
            '{' => 1,
            '}' => -1,
            _ => 0,
        })
        .sum()
}

/// A file-scope declaration of data rather than a function, a macro or a comment.
fn looks_like_data(trimmed: &str) -> bool {
    !trimmed.is_empty()
        && !trimmed.starts_with(['#', '/', '*', '}', '{'])
        && !trimmed.contains('(')
        && (trimmed.ends_with(';') || trimmed.ends_with('{') || trimmed.contains(" = "))
        && !trimmed.starts_with("struct ") // a forward declaration or an aggregate opener
        && !trimmed.starts_with("EXPORT_SYMBOL")
}

fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
        !before.is_some_and(ident) && (word.ends_with('(') || !after.is_some_and(ident))
    })
}

#[cfg(test)]
mod signature_tests {
    use super::*;

    fn changes(diff: &str) -> Vec<(String, u32)> {
        signature_changes(&crate::patch::parse(diff.as_bytes()).unwrap())
            .into_iter()
            .map(|c| (c.function, c.line))
            .collect()
    }

    #[test]
    fn a_changed_parameter_is_a_signature_change() {
        let diff = "--- a/k.c\n+++ b/k.c\n@@ -10,4 +10,4 @@\n static int foo(int a,\n-\t       int b)\n+\t       long b)\n {\n \treturn a;\n";
        assert_eq!(changes(diff), [("foo".to_owned(), 11)]);
    }

    #[test]
    fn a_changed_body_or_a_macro_is_not() {
        let body = "--- a/k.c\n+++ b/k.c\n@@ -10,3 +10,3 @@\n int foo(int a)\n {\n-\treturn a;\n+\treturn a + 1;\n";
        assert!(changes(body).is_empty());
        let export =
            "--- a/k.c\n+++ b/k.c\n@@ -10 +10 @@\n-EXPORT_SYMBOL(foo);\n+EXPORT_SYMBOL_GPL(foo);\n";
        assert!(changes(export).is_empty());
    }

    #[test]
    fn a_changed_prototype_in_a_header_is() {
        let diff = "--- a/include/k.h\n+++ b/include/k.h\n@@ -3 +3 @@\n-extern int foo(int a);\n+extern int foo(long a);\n";
        assert_eq!(changes(diff), [("foo".to_owned(), 3)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_as_in_the_json_form_and_links_to_a_section_of_the_guide() {
        let mut anchors = std::collections::BTreeSet::new();
        for kind in PitfallKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.name());
            assert_eq!(PitfallKind::parse(kind.name()), Some(kind));
            assert!(kind.guide_url().starts_with(PATCH_AUTHOR_GUIDE));
            assert!(kind.why_it_matters().ends_with('.'));
            anchors.insert(kind.guide_section().1);
        }
        assert_eq!(PitfallKind::parse("no-such-kind"), None);
        // Two kinds share the data structure section.
        assert_eq!(anchors.len(), PitfallKind::ALL.len() - 1);
    }

    fn kinds(diff: &str) -> Vec<(PitfallKind, u32)> {
        check(&crate::patch::parse(diff.as_bytes()).unwrap())
            .into_iter()
            .map(|p| (p.kind, p.line))
            .collect()
    }

    #[test]
    fn a_struct_member_change_is_a_data_structure_change() {
        let diff = "--- a/include/net/sock.h\n+++ b/include/net/sock.h\n@@ -10,4 +10,5 @@\n struct sock {\n \tint a;\n+\tint b;\n \tlong c;\n };\n";
        assert_eq!(
            kinds(diff),
            [(PitfallKind::DataStructure, 12), (PitfallKind::Header, 12)]
        );
    }

    #[test]
    fn a_member_change_below_a_struct_heading() {
        // git names the enclosing struct in the hunk heading.
        let diff = "--- a/net/x.c\n+++ b/net/x.c\n@@ -20,3 +20,3 @@ struct nft_ctx {\n \tu8 family;\n-\tu8 level;\n+\tu16 level;\n \tbool report;\n";
        // The removed and the added line are both line 21: one finding.
        assert_eq!(kinds(diff), [(PitfallKind::DataStructure, 21)]);
    }

    #[test]
    fn function_body_changes_are_not_data_changes() {
        let diff = "--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -7,4 +7,6 @@\n static int cmdline_proc_show(struct seq_file *m, void *v)\n {\n+\tif (!saved_command_line)\n+\t\treturn -EINVAL;\n \tseq_puts(m, saved_command_line);\n \treturn 0;\n";
        assert!(kinds(diff).is_empty(), "{:?}", kinds(diff));
    }

    #[test]
    fn once_macros_static_locals_and_global_data() {
        let diff = "--- a/mm/x.c\n+++ b/mm/x.c\n@@ -1,5 +1,8 @@\n-static int limit = 4;\n+static int limit = 8;\n int f(int v)\n {\n+\tstatic int calls;\n+\tpr_warn_once(\"slow\\n\");\n \treturn v;\n }\n+int g(int v) { return v; }\n";
        assert_eq!(
            kinds(diff),
            [
                (PitfallKind::GlobalData, 1),
                (PitfallKind::StaticLocal, 4),
                (PitfallKind::OnceMacro, 5),
            ]
        );
    }

    #[test]
    fn init_syscall_jump_labels_exports_and_assembly() {
        let diff = "--- a/kernel/x.c\n+++ b/kernel/x.c\n@@ -1,2 +1,6 @@\n int a;\n+static int __init x_init(void) { return 0; }\n+SYSCALL_DEFINE1(x, int, v)\n+\tif (static_branch_unlikely(&key))\n+EXPORT_SYMBOL(x_init);\n int b;\n--- a/arch/x86/entry/entry_64.S\n+++ b/arch/x86/entry/entry_64.S\n@@ -5 +5 @@\n-\tret\n+\tRET\n";
        let found = kinds(diff);
        assert!(found.contains(&(PitfallKind::Assembly, 5)), "{found:?}");
        assert!(found.contains(&(PitfallKind::InitExit, 2)), "{found:?}");
        assert!(
            found.contains(&(PitfallKind::SyscallDefine, 3)),
            "{found:?}"
        );
        assert!(found.contains(&(PitfallKind::JumpLabel, 4)), "{found:?}");
        assert!(
            found.contains(&(PitfallKind::ExportedSignature, 5)),
            "{found:?}"
        );
    }

    #[test]
    fn a_hunk_that_changes_the_line_count_shifts_later_lines() {
        let diff =
            "--- a/k.c\n+++ b/k.c\n@@ -10,2 +10,3 @@\n a\n+b\n c\n@@ -50,2 +51,2 @@\n x\n-y\n+Y\n";
        assert_eq!(kinds(diff), [(PitfallKind::LineShift, 50)]);
    }

    #[test]
    fn words_must_match_whole() {
        assert!(contains_word("static int __init f(void)", "__init"));
        assert!(!contains_word("static int __initialize(void)", "__init"));
        assert!(contains_word("module_init(f);", "module_init("));
    }
}
