//! What the line table cannot see, found in the target's source: changed macros followed
//! to the functions expanding them, data and type changes, and what is reported when
//! there is no source. Against the gcc-built fixtures (`fixtures/macros.c`,
//! `macros_user.c`, `macros.h`).

mod common;

use analyzer::expand::{DataKind, Followed};
use analyzer::heading::HunkVerdict;
use analyzer::impact::{analyze, analyze_on, HunkOutcome, ImpactReport, LineBasis, TargetSource};
use analyzer::index::{KernelIndex, ObjectIndex};
use analyzer::onto::HunkState;
use analyzer::patch;
use analyzer::source::{SourceError, SourceIndex};
use common::Build;
use std::sync::OnceLock;

fn index() -> &'static KernelIndex {
    static INDEX: OnceLock<KernelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let image = Build::compile(5).vmlinux();
        KernelIndex {
            objects: vec![ObjectIndex::build("vmlinux", &image, &|_| {}).expect("index")],
        }
    })
}

fn tree() -> &'static common::FixtureTree {
    common::fixture_tree()
}

fn with_index() -> Option<TargetSource<'static>> {
    Some(TargetSource {
        tree: &tree().source,
        index: Some(&tree().index),
        config: None,
    })
}

fn without_index() -> Option<TargetSource<'static>> {
    Some(TargetSource {
        tree: &tree().source,
        index: None,
        config: None,
    })
}

/// A fix of fixture `file` replacing line `line` (`old`, as the file has it) by `new`,
/// its hunk written at `at`, with the line before and after as context.
fn fix(file: &str, at: u32, before: &str, old: &str, new: &str, after: &str) -> patch::Patch {
    let path = format!("analyzer/tests/fixtures/{file}");
    let text = format!(
        "--- a/{path}\n+++ b/{path}\n@@ -{at},3 +{at},3 @@\n {before}\n-{old}\n+{new}\n {after}\n"
    );
    patch::parse(text.as_bytes()).expect("diff")
}

fn clamp_base_fix(at: u32) -> patch::Patch {
    fix(
        "macros.c",
        at,
        "",
        "#define CLAMP_BASE(x) ((x) & 0xff)",
        "#define CLAMP_BASE(x) ((x) & 0x7f)",
        "#define CLAMPED(x) \\",
    )
}

fn replaced(report: &ImpactReport) -> Vec<&str> {
    report.replace.iter().map(|r| r.symbol.as_str()).collect()
}

#[test]
fn a_changed_macro_names_the_functions_it_expands_into_through_the_chain() {
    // Written two lines too high, as for another tree: found at line 5 all the same.
    let report = analyze_on(&clamp_base_fix(3), index(), with_index()).expect("analysis");
    assert_eq!(report.basis, LineBasis::TargetSource);
    assert_eq!(
        report.hunks[0].outcome,
        HunkOutcome::Placed(HunkState::Applied {
            offset: 2,
            fuzz: 0,
            target_line: 5
        })
    );
    assert_eq!(report.changed_lines[0].lines, [6]);
    assert_eq!(report.expansions.len(), 1, "{report}");
    let expansion = &report.expansions[0];
    assert_eq!(expansion.kind, Followed::Macro);
    assert_eq!(expansion.name, "CLAMP_BASE");
    assert_eq!(expansion.through, ["CLAMPED"]);
    let uses: Vec<u32> = expansion.uses.iter().map(|u| u.line).collect();
    assert_eq!(uses, [13, 18]);
    assert_eq!(expansion.functions, ["use_clamp_a", "use_clamp_b"]);
    // Replaced through the line table, and no_macro() is not.
    assert_eq!(replaced(&report), ["use_clamp_a", "use_clamp_b"]);
    let evidence = &report.changed_functions[0].evidence;
    assert!(
        evidence.contains("which uses CLAMP_BASE through CLAMPED"),
        "{evidence}"
    );
    assert!(report.not_analysable.is_empty(), "{report}");
    let text = report.to_string();
    assert!(text.contains("line numbers: target source"), "{text}");
    assert!(text.contains("applies at line 5 (offset +2)"), "{text}");
    assert!(
        text.contains("macro CLAMP_BASE (changed at analyzer/tests/fixtures/macros.c:6), through CLAMPED: 2 line(s) use it, in use_clamp_a(), use_clamp_b()"),
        "{text}"
    );
}

#[test]
fn a_changed_macro_continuation_line_is_its_macro() {
    let report = analyze_on(
        &fix(
            "macros.c",
            6,
            "#define CLAMPED(x) \\",
            "\t(CLAMP_BASE(x) + 1)",
            "\t(CLAMP_BASE(x) + 2)",
            "#define LIMITS 4",
        ),
        index(),
        without_index(),
    )
    .expect("analysis");
    assert_eq!(report.expansions[0].name, "CLAMPED");
    // A macro of a .c file is used in that file only: no index needed.
    assert_eq!(replaced(&report), ["use_clamp_a", "use_clamp_b"]);
}

#[test]
fn a_changed_macro_in_a_header_names_the_functions_of_every_file_using_it() {
    let header_fix = || {
        fix(
            "macros.h",
            5,
            "",
            "#define SCALE_SHIFT 2",
            "#define SCALE_SHIFT 3",
            "#define SCALED(x) ((x) << SCALE_SHIFT)",
        )
    };
    let report = analyze_on(&header_fix(), index(), with_index()).expect("analysis");
    let expansion = &report.expansions[0];
    assert_eq!(expansion.name, "SCALE_SHIFT");
    assert_eq!(expansion.through, ["SCALED"]);
    let uses: Vec<(&str, u32)> = expansion
        .uses
        .iter()
        .map(|u| (u.path.rsplit('/').next().unwrap(), u.line))
        .collect();
    assert_eq!(uses, [("macros.c", 28), ("macros_user.c", 6)]);
    assert_eq!(replaced(&report), ["use_scaled_here", "use_scaled_there"]);

    // Without the index, the header's users elsewhere cannot be found: said, not hidden.
    let report = analyze_on(&header_fix(), index(), without_index()).expect("analysis");
    assert!(report.replace.is_empty());
    assert!(
        report
            .not_analysable
            .iter()
            .any(|n| n.why.contains("without a source index")),
        "{report}"
    );
}

#[test]
fn without_the_source_a_changed_macro_is_not_analysable_rather_than_nothing_to_replace() {
    let report = analyze(&clamp_base_fix(5), index()).expect("analysis");
    assert_eq!(report.basis, LineBasis::AsWritten);
    assert!(report.replace.is_empty());
    assert_eq!(report.not_analysable.len(), 1, "{report}");
    let item = &report.not_analysable[0];
    assert_eq!(item.at.line, 6);
    assert_eq!(item.text, "#define CLAMP_BASE(x) ((x) & 0xff)");
    assert!(item.why.contains("without the source"), "{}", item.why);
    assert!(
        report.to_string().contains("NOT ANALYSABLE (1)"),
        "{report}"
    );

    // A header of macros only, which the build has no code of: the same, not an error.
    let report = analyze(
        &fix(
            "macros.h",
            5,
            "",
            "#define SCALE_SHIFT 2",
            "#define SCALE_SHIFT 3",
            "#define SCALED(x) ((x) << SCALE_SHIFT)",
        ),
        index(),
    )
    .expect("analysis");
    assert!(report.replace.is_empty());
    assert_eq!(report.not_analysable.len(), 1, "{report}");
}

#[test]
fn changed_global_data_and_a_constant_in_a_type_are_data_changes() {
    let report = analyze_on(
        &fix(
            "macros.c",
            33,
            "",
            "int defaults[] = { 1, 2, 3 };",
            "int defaults[] = { 1, 2, 4 };",
            "",
        ),
        index(),
        with_index(),
    )
    .expect("analysis");
    assert_eq!(report.data_changes.len(), 1, "{report}");
    let change = &report.data_changes[0];
    assert_eq!(change.kind, DataKind::Data);
    assert_eq!(change.names, ["defaults"]);
    assert_eq!(change.users, ["read_default"]);
    assert!(report.replace.is_empty(), "{report}");
    assert!(report.not_analysable.is_empty(), "{report}");

    let report = analyze_on(
        &fix(
            "macros.c",
            8,
            "\t(CLAMP_BASE(x) + 1)",
            "#define LIMITS 4",
            "#define LIMITS 8",
            "",
        ),
        index(),
        with_index(),
    )
    .expect("analysis");
    let kinds: Vec<(DataKind, Vec<String>)> = report
        .data_changes
        .iter()
        .map(|c| (c.kind, c.names.clone()))
        .collect();
    assert_eq!(
        kinds,
        [(
            DataKind::Constant,
            vec!["LIMITS".to_owned(), "struct limits".to_owned()]
        )]
    );
    assert!(report.to_string().contains("Data and type changes (1)"));

    // A member of the type: a type change, with the functions using it.
    let report = analyze_on(
        &fix(
            "macros.c",
            30,
            "struct limits {",
            "\tint max[LIMITS];",
            "\tlong max[LIMITS];",
            "};",
        ),
        index(),
        with_index(),
    )
    .expect("analysis");
    assert_eq!(report.data_changes[0].kind, DataKind::Type);
    assert_eq!(report.data_changes[0].names, ["struct limits"]);
    assert_eq!(report.data_changes[0].users, ["read_limit"]);
}

#[test]
fn a_hunk_that_does_not_apply_is_analysed_nowhere() {
    // The line it removes is nowhere in the target's macros.c (fuzz ignores context
    // only, never a removed line).
    let report = analyze_on(
        &fix(
            "macros.c",
            22,
            "{",
            "\treturn v * 99;",
            "\treturn v * 98;",
            "}",
        ),
        index(),
        with_index(),
    )
    .expect("analysis");
    assert_eq!(
        report.hunks[0].outcome,
        HunkOutcome::Placed(HunkState::NotFound)
    );
    assert!(!report.hunks[0].analysed);
    assert!(report.changed_lines.is_empty());
    assert!(report.changed_functions.is_empty());
    let text = report.to_string();
    assert!(text.contains("DOES NOT APPLY"), "{text}");
    assert!(text.contains("NOT ANALYSED"), "{text}");
}

#[test]
fn a_hunk_the_debug_information_contradicts_is_not_analysed_at_its_lines() {
    // Written for a tree where no_macro() came first; here line 13 is use_clamp_a's.
    let text = "--- a/analyzer/tests/fixtures/macros.c\n+++ b/analyzer/tests/fixtures/macros.c\n\
                @@ -12,3 +12,3 @@ int no_macro(int v)\n {\n-\treturn CLAMPED(v) * 3;\n+\treturn v * 14;\n }\n";
    let report = analyze(&patch::parse(text.as_bytes()).unwrap(), index()).expect("analysis");
    let HunkOutcome::Checked(HunkVerdict::Inconsistent {
        expected, found, ..
    }) = &report.hunks[0].outcome
    else {
        panic!("{report}");
    };
    assert_eq!(
        (expected.as_str(), found.as_slice()),
        ("no_macro", &["use_clamp_a".to_owned()][..])
    );
    assert!(!report.hunks[0].analysed);
    assert!(report.replace.is_empty());
    assert!(
        report.to_string().contains("DOES NOT MATCH THIS BUILD"),
        "{report}"
    );
    // The same hunk under its right heading is analysed.
    let text = text.replace("int no_macro(int v)", "int use_clamp_a(int v)");
    let report = analyze(&patch::parse(text.as_bytes()).unwrap(), index()).expect("analysis");
    assert_eq!(
        report.hunks[0].outcome,
        HunkOutcome::Checked(HunkVerdict::Consistent {
            function: "use_clamp_a".into()
        })
    );
    assert_eq!(replaced(&report), ["use_clamp_a"]);
}

#[test]
fn the_source_index_lists_the_files_of_an_identifier_and_survives_its_encoding() {
    let index = &tree().index;
    let files = |name: &str| -> Vec<String> {
        index
            .files_with(name)
            .into_iter()
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(files("SCALED"), ["macros.c", "macros.h", "macros_user.c"]);
    assert_eq!(files("CLAMP_BASE"), ["macros.c"]);
    // In a comment only: not a use.
    assert!(files("IPA").is_empty());
    assert!(files("no_such_identifier").is_empty());

    let bytes = index.to_bytes();
    assert_eq!(&SourceIndex::from_bytes(&bytes).unwrap(), index);
    for cut in 0..bytes.len() {
        assert!(
            SourceIndex::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    for at in (0..bytes.len()).step_by(7) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x40;
        assert!(
            matches!(
                SourceIndex::from_bytes(&damaged),
                Err(SourceError::NotASourceIndex
                    | SourceError::SourceIndexVersion { .. }
                    | SourceError::SourceIndexDamaged(_))
            ),
            "byte {at}"
        );
    }
}

#[test]
fn the_json_report_carries_the_new_sections_and_reads_back() {
    let report = analyze_on(&clamp_base_fix(5), index(), with_index()).expect("analysis");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["version"], 5);
    assert_eq!(json["basis"], "target-source");
    assert_eq!(json["hunks"][0]["outcome"]["placed"]["state"], "applied");
    assert_eq!(json["expansions"][0]["name"], "CLAMP_BASE");
    let back: ImpactReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
}
