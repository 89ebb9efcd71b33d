//! Without the target's source: does each hunk, at the lines it is written for, fall
//! where the build's debug information says its heading's function is?
//!
//! `git diff` heads each hunk with the nearest line above it that looks like a function
//! definition (`@@ -2637,6 +2637,7 @@ struct task_struct *create_io_thread(int`). A fix
//! written for another tree has other line numbers than the target; the heading is
//! then the only witness of where the hunk belongs. [`check_against_index`] takes the
//! function the heading names and asks the index of the target build whether that
//! function is declared above the hunk's first line with no other function declared in
//! between, and whether the lines the hunk changes fall in it (or in a function whose
//! definition starts inside the hunk). Where they disagree the hunk does not match the
//! build and must not be analysed at those lines.

use crate::impact::{hunk_changed_lines, FileCode};
use crate::index::{IndexError, KernelIndex, ObjectIndex};
use crate::patch::{Hunk, LineKind, Patch};
use serde::{Deserialize, Serialize};

/// What the debug information says of one hunk's heading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
pub enum HunkVerdict {
    /// The heading's function is where the hunk is, and its changed lines are in it.
    Consistent {
        /// The function.
        function: String,
    },
    /// The build has the lines elsewhere than the heading says: the fix does not match
    /// this build at these line numbers.
    Inconsistent {
        /// The function the heading names.
        expected: String,
        /// The functions the build has at the hunk's lines.
        found: Vec<String>,
        /// What disagrees, with line numbers.
        why: String,
    },
    /// Nothing to check against.
    Unknown {
        /// Why (no heading, a heading that is no function, no code of the file).
        why: String,
    },
}

impl HunkVerdict {
    /// Whether the hunk is analysed at its lines: unless the build contradicts it.
    pub fn analysed(&self) -> bool {
        !matches!(self, HunkVerdict::Inconsistent { .. })
    }
}

/// One hunk and its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HunkCheck {
    /// Tree-relative path (the old path for a rename).
    pub path: String,
    /// The hunk's number in its file, from 1.
    pub hunk: u32,
    /// Its old-side start as written in the fix.
    pub fix_line: u32,
    /// What the debug information says.
    pub verdict: HunkVerdict,
}

/// The function names a hunk heading may stand for: the function a definition line
/// names (`static __latent_entropy struct task_struct *copy_process(` gives
/// `copy_process`), or for `SYSCALL_DEFINEn(name, ...` the functions the macro defines.
/// `None` for a heading that is not a function definition: a type, data, a macro call,
/// a prototype.
pub fn heading_functions(section: &str) -> Option<Vec<String>> {
    let text = section.trim_end();
    if text.is_empty() || text.starts_with([' ', '\t', '#', '/', '*', '}', '{']) {
        return None;
    }
    let open = text.find('(')?;
    let before = text[..open].trim_end();
    // `x = f(`: an initialiser; `foo(...);`: a prototype or a macro statement.
    if before.contains('=') || text.ends_with(';') {
        return None;
    }
    let name: String = before
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    for (prefix, functions) in [
        (
            "COMPAT_SYSCALL_DEFINE",
            &["__do_compat_sys_", "__se_compat_sys_"][..],
        ),
        ("SYSCALL_DEFINE", &["__do_sys_", "__se_sys_"][..]),
    ] {
        if let Some(arity) = name.strip_prefix(prefix) {
            if !arity.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let argument: String = text[open + 1..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if argument.is_empty() {
                return None;
            }
            return Some(functions.iter().map(|p| format!("{p}{argument}")).collect());
        }
    }
    // A definition has a type before its name; an upper-case word alone is a macro.
    let macro_like = name
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if before.len() == name.len() || macro_like {
        return None;
    }
    Some(vec![name])
}

/// Checks every hunk of `patch` against the functions `index` has in its file.
pub fn check_against_index(
    patch: &Patch,
    index: &KernelIndex,
) -> Result<Vec<HunkCheck>, IndexError> {
    let mut checks = Vec::new();
    for file in &patch.files {
        let Some(path) = &file.old_path else {
            continue;
        };
        let mut codes = Vec::new();
        for object in &index.objects {
            if let Some(code) = FileCode::of(object, path)? {
                codes.push((object, code));
            }
        }
        for (n, hunk) in file.hunks.iter().enumerate() {
            checks.push(HunkCheck {
                path: path.clone(),
                hunk: n as u32 + 1,
                fix_line: hunk.old_start,
                verdict: verdict(path, hunk, &codes),
            });
        }
    }
    Ok(checks)
}

/// One hunk's verdict over the objects with code of its file: contradicted by any,
/// else confirmed by any, else unknown.
fn verdict(path: &str, hunk: &Hunk, codes: &[(&ObjectIndex, FileCode)]) -> HunkVerdict {
    if codes.is_empty() {
        return HunkVerdict::Unknown {
            why: format!("this build has no code of {path}"),
        };
    }
    let Some(names) = heading_functions(&hunk.section) else {
        return HunkVerdict::Unknown {
            why: if hunk.section.is_empty() {
                "the hunk has no heading".to_owned()
            } else {
                format!(
                    "the heading `{}` is not a function definition",
                    hunk.section
                )
            },
        };
    };
    let verdicts: Vec<HunkVerdict> = codes
        .iter()
        .map(|(object, code)| in_object(path, hunk, &names, object, code))
        .collect();
    verdicts
        .iter()
        .find(|v| matches!(v, HunkVerdict::Inconsistent { .. }))
        .or_else(|| {
            verdicts
                .iter()
                .find(|v| matches!(v, HunkVerdict::Consistent { .. }))
        })
        .or_else(|| verdicts.first())
        .cloned()
        .unwrap_or(HunkVerdict::Unknown {
            why: format!("this build has no code of {path}"),
        })
}

fn in_object(
    path: &str,
    hunk: &Hunk,
    names: &[String],
    object: &ObjectIndex,
    code: &FileCode,
) -> HunkVerdict {
    let shown = names.join("() or ");
    let named = |f: u32| names.iter().any(|n| n == object.function_name(f));
    let heading: Vec<(u32, u32)> = code
        .declared
        .iter()
        .copied()
        .filter(|&(_, f)| named(f))
        .collect();
    if heading.is_empty() {
        return HunkVerdict::Unknown {
            why: format!(
                "the heading names {shown}(), which {} does not have in {path} (not built in this configuration?)",
                object.name
            ),
        };
    }
    // The hunk's first line; an empty old side is written as the line before it.
    let start = if hunk.old_lines == 0 {
        hunk.old_start.saturating_add(1)
    } else {
        hunk.old_start
    };
    let end = start.saturating_add(hunk.old_lines);
    let above = code.declared.partition_point(|&(d, _)| d < start);
    let Some(&(nearest_line, _)) = above.checked_sub(1).map(|i| &code.declared[i]) else {
        let (line, _) = heading[0];
        return HunkVerdict::Inconsistent {
            expected: names[0].clone(),
            found: Vec::new(),
            why: format!(
                "{shown}() is declared at {path}:{line} in {}, below the hunk's line {start}, and no function is declared above it",
                object.name
            ),
        };
    };
    let nearest: Vec<u32> = code.declared[..above]
        .iter()
        .rev()
        .take_while(|&&(d, _)| d == nearest_line)
        .map(|&(_, f)| f)
        .collect();
    let names_of = |fs: &[u32]| -> Vec<String> {
        let mut found: Vec<String> = fs
            .iter()
            .map(|&f| object.function_name(f).to_owned())
            .collect();
        found.sort();
        found.dedup();
        found
    };
    if !nearest.iter().any(|&f| named(f)) {
        let found = names_of(&nearest);
        let (line, _) = heading
            .iter()
            .copied()
            .min_by_key(|&(d, _)| d.abs_diff(start))
            .unwrap_or(heading[0]);
        let place = if line >= start {
            format!("below the hunk's line {start}")
        } else {
            format!(
                "and {}() is declared at line {nearest_line}, between it and the hunk's line {start}",
                found.join("(), ")
            )
        };
        return HunkVerdict::Inconsistent {
            expected: names[0].clone(),
            found,
            why: format!(
                "the heading names {shown}(), declared at {path}:{line} in {}, {place}",
                object.name
            ),
        };
    }
    // Its changed lines must be in that function, or in one whose definition starts
    // inside the hunk (the hunk shows its first lines).
    let allowed = |f: u32| {
        nearest.contains(&f)
            || code
                .declared
                .iter()
                .any(|&(d, g)| g == f && d >= start && d < end)
    };
    for line in hunk_changed_lines(hunk) {
        let at: Vec<u32> = code
            .functions_at(object, line)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        let outside: Vec<u32> = at.iter().copied().filter(|&f| !allowed(f)).collect();
        if !outside.is_empty() {
            let found = names_of(&outside);
            return HunkVerdict::Inconsistent {
                expected: names[0].clone(),
                why: format!(
                    "the heading names {shown}(), but {} has {path}:{line} in {}()",
                    object.name,
                    found.join("(), ")
                ),
                found,
            };
        }
    }
    // A definition the hunk shows (in its context or removed lines) must be where this
    // build declares that function: the heading alone does not see a hunk that moved
    // past the end of its function (an insertion between two functions).
    for line in &hunk.lines {
        let (Some(at), LineKind::Context | LineKind::Removed) = (line.old_line, line.kind) else {
            continue;
        };
        let Some(defined) = heading_functions(&line.text) else {
            continue;
        };
        let declared: Vec<u32> = code
            .declared
            .iter()
            .filter(|&&(_, f)| defined.iter().any(|n| n == object.function_name(f)))
            .map(|&(d, _)| d)
            .collect();
        if !declared.is_empty() && !declared.contains(&at) {
            return HunkVerdict::Inconsistent {
                expected: names[0].clone(),
                found: defined.clone(),
                why: format!(
                    "the hunk shows the definition of {}() at {path}:{at}, but {} declares it at line {}",
                    defined.join("() or "),
                    object.name,
                    declared
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
    }
    HunkVerdict::Consistent {
        function: object.function_name(nearest[0]).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(section: &str) -> Option<Vec<String>> {
        heading_functions(section)
    }

    #[test]
    fn a_definition_heading_names_its_function() {
        let v = |s: &str| Some(vec![s.to_owned()]);
        assert_eq!(
            one("static __latent_entropy struct task_struct *copy_process("),
            v("copy_process")
        );
        assert_eq!(
            one("static void synchronize_group_exit(struc"),
            v("synchronize_group_exit")
        );
        assert_eq!(one("void __noreturn do_exit(long code)"), v("do_exit"));
        assert_eq!(
            one("SYSCALL_DEFINE5(clone, unsigned long, clone_flags, unsigned long, newsp,"),
            Some(vec![
                "__do_sys_clone".to_owned(),
                "__se_sys_clone".to_owned()
            ])
        );
    }

    #[test]
    fn other_headings_name_nothing() {
        for section in [
            "",
            "struct nft_ctx {",
            "static const struct file_operations fops = {",
            "EXPORT_SYMBOL_GPL(foo);",
            "int foo(int a);",
            "MODULE_LICENSE(\"GPL\")",
            "static int limit",
            "\tif (x) {",
        ] {
            assert_eq!(one(section), None, "{section}");
        }
    }
}
