//! Following a fix with the build's configuration: what the build does not compile is
//! left out, and said. Against `fixtures/configured.c`, built by gcc with its
//! configuration (`fixtures/gb_autoconf.h`, included through `gb_kconfig.h` as kbuild
//! includes `include/linux/kconfig.h`), and the same configuration as a `.config`
//! (`data/configured.config`), which the analysis is given.

mod common;

use analyzer::impact::{analyze_on, ImpactReport, TargetSource};
use analyzer::index::{KernelIndex, ObjectIndex};
use analyzer::patch;
use analyzer::source::{evaluate_if, ConfigValue, KernelConfig, Truth};
use common::{fixtures, Build};
use std::path::Path;
use std::sync::OnceLock;

const FILE: &str = "analyzer/tests/fixtures/configured.c";

fn index() -> &'static KernelIndex {
    static INDEX: OnceLock<KernelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let image = Build::compile_sources(5, &["configured.c", "stubs.c"], &[]).vmlinux();
        KernelIndex {
            objects: vec![ObjectIndex::build("vmlinux", &image, &|_| {}).expect("index")],
        }
    })
}

fn config() -> &'static KernelConfig {
    static CONFIG: OnceLock<KernelConfig> = OnceLock::new();
    CONFIG.get_or_init(|| {
        KernelConfig::read(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configured.config"),
        )
        .expect("configuration")
    })
}

fn tree() -> &'static common::FixtureTree {
    common::fixture_tree()
}

fn configured() -> Option<TargetSource<'static>> {
    Some(TargetSource {
        tree: &tree().source,
        index: Some(&tree().index),
        config: Some(config()),
    })
}

fn unconfigured() -> Option<TargetSource<'static>> {
    Some(TargetSource {
        tree: &tree().source,
        index: Some(&tree().index),
        config: None,
    })
}

fn fixture_lines() -> Vec<String> {
    std::fs::read_to_string(fixtures().join("configured.c"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The line of `configured.c` whose text is `text` (the only one).
fn line_of(text: &str) -> u32 {
    let lines = fixture_lines();
    let found: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == text).collect();
    assert_eq!(found.len(), 1, "{text:?} in configured.c");
    found[0] as u32 + 1
}

/// A fix of `configured.c` replacing the line `old` by `new` (or removing it), with the
/// lines around it as context.
fn fix(old: &str, new: Option<&str>) -> patch::Patch {
    let lines = fixture_lines();
    let at = line_of(old);
    let (before, after) = (&lines[at as usize - 2], &lines[at as usize]);
    let added = new.map(|n| format!("+{n}\n")).unwrap_or_default();
    let new_count = if new.is_some() { 3 } else { 2 };
    let text = format!(
        "--- a/{FILE}\n+++ b/{FILE}\n@@ -{},3 +{},{new_count} @@\n {before}\n-{old}\n{added} {after}\n",
        at - 1,
        at - 1
    );
    patch::parse(text.as_bytes()).expect("diff")
}

fn analyse(fix: &patch::Patch, source: Option<TargetSource<'static>>) -> ImpactReport {
    let report = analyze_on(fix, index(), source).expect("analysis");
    assert!(report.hunks.iter().all(|h| h.analysed), "{report}");
    report
}

fn replaced(report: &ImpactReport) -> Vec<&str> {
    report.replace.iter().map(|r| r.symbol.as_str()).collect()
}

fn built(function: &str) -> bool {
    index().objects[0]
        .functions
        .iter()
        .any(|f| f.name == function && f.defined)
}

#[test]
fn the_configuration_file_is_the_one_the_fixture_was_built_with() {
    let autoconf = KernelConfig::read(&fixtures().join("gb_autoconf.h")).expect("autoconf.h");
    let symbols = |c: &KernelConfig| -> Vec<(String, ConfigValue)> {
        c.symbols()
            .map(|(n, v)| (n.to_owned(), v.clone()))
            .collect()
    };
    assert_eq!(symbols(config()), symbols(&autoconf));
    assert_eq!(config().get("CONFIG_GB_MOD"), Some(&ConfigValue::Module));
    assert_eq!(config().get("CONFIG_GB_OFF"), None);
    assert!(config().is_macro_defined("CONFIG_GB_MOD_MODULE"));
    assert!(!config().is_macro_defined("CONFIG_GB_MOD"));
    assert_eq!(
        evaluate_if(
            b"IS_ENABLED(CONFIG_GB_MOD) && !IS_BUILTIN(CONFIG_GB_MOD)",
            config()
        ),
        Truth::True
    );
}

#[test]
fn what_the_configuration_leaves_out_is_what_gcc_left_out() {
    // (a line of a function's body, the function, whether gcc compiled the line)
    for (line, function, compiled) in [
        ("\treturn GB_SCALE(v) + 1;", "gb_scaled", true),
        ("\treturn v + GB_STEP;", "gb_stepped", true),
        ("\tv += GB_STEP;", "gb_off_only", false),
        ("\treturn v * 11;", "gb_off_only", true),
        ("\treturn v - GB_STEP;", "gb_never", false),
        ("\treturn v ^ 5;", "gb_step_defined", true),
        ("\treturn v + 2;", "gb_decided", true),
        ("\treturn v - 2;", "gb_decided", false),
        ("\treturn v + 21;", "gb_mod_builtin", false),
        ("\treturn v + 22;", "gb_mod_module", true),
        ("\treturn v + 23;", "gb_mod_neither", false),
        ("\treturn v + 24;", "gb_unreachable", false),
        ("\treturn v + 25;", "gb_not_off", true),
    ] {
        let report = analyse(&fix(line, Some("\treturn 0;")), configured());
        if compiled {
            assert!(built(function), "gcc built {function}");
            assert!(report.not_compiled.is_empty(), "{line:?}: {report}");
            assert_eq!(replaced(&report), [function], "{line:?}: {report}");
        } else {
            assert_eq!(report.not_compiled.len(), 1, "{line:?}: {report}");
            assert_eq!(report.not_compiled[0].at.line, line_of(line));
            assert!(report.replace.is_empty(), "{line:?}: {report}");
            assert!(report.changed_functions.is_empty(), "{line:?}: {report}");
        }
    }
    for function in [
        "gb_never",
        "gb_mod_builtin",
        "gb_mod_neither",
        "gb_unreachable",
    ] {
        assert!(!built(function), "gcc left {function} out");
    }
}

#[test]
fn a_fix_to_a_line_the_build_leaves_out_replaces_nothing_and_says_why() {
    let changed = fix("\tv += GB_STEP;", Some("\tv += 2 * GB_STEP;"));
    let report = analyse(&changed, configured());
    assert!(report.replace.is_empty(), "{report}");
    assert!(report.not_analysable.is_empty(), "{report}");
    let item = &report.not_compiled[0];
    assert_eq!(item.text, "\tv += GB_STEP;");
    assert_eq!(
        item.directive.line,
        line_of("#if IS_ENABLED(CONFIG_GB_OFF)")
    );
    assert_eq!(item.directive_text, "#if IS_ENABLED(CONFIG_GB_OFF)");
    assert_eq!(
        item.why,
        format!(
            "`#if IS_ENABLED(CONFIG_GB_OFF)` (line {}) with CONFIG_GB_OFF not set",
            item.directive.line
        )
    );
    // Without the configuration, the function around the line is replaced, as before.
    let report = analyse(&changed, unconfigured());
    assert!(report.not_compiled.is_empty());
    assert_eq!(replaced(&report), ["gb_off_only"]);
}

#[test]
fn a_macro_defined_per_configuration_is_followed_from_the_compiled_definition_only() {
    // The definition this build compiles: its users are named.
    let report = analyse(
        &fix(
            "#define GB_SCALE(x) ((x) * 3)",
            Some("#define GB_SCALE(x) ((x) * 4)"),
        ),
        configured(),
    );
    assert_eq!(report.expansions.len(), 1, "{report}");
    assert_eq!(report.expansions[0].name, "GB_SCALE");
    assert_eq!(report.expansions[0].functions, ["gb_scaled"]);
    assert_eq!(replaced(&report), ["gb_scaled"]);
    assert!(report.not_compiled.is_empty(), "{report}");

    // The other one: nothing of this build changes, and the report says why.
    let other = fix(
        "#define GB_SCALE(x) ((x) * 5)",
        Some("#define GB_SCALE(x) ((x) * 6)"),
    );
    let report = analyse(&other, configured());
    assert!(report.expansions.is_empty(), "{report}");
    assert!(report.replace.is_empty(), "{report}");
    assert!(report.not_analysable.is_empty(), "{report}");
    assert_eq!(report.not_compiled.len(), 1, "{report}");
    let item = &report.not_compiled[0];
    let ifdef = line_of("#ifdef CONFIG_GB_ON");
    let at_else = line_of("#define GB_SCALE(x) ((x) * 5)") - 1;
    assert_eq!(item.at.line, line_of("#define GB_SCALE(x) ((x) * 5)"));
    assert_eq!(item.directive.line, ifdef);
    assert_eq!(item.directive_text, "#ifdef CONFIG_GB_ON");
    let why = format!(
        "`#else` (line {at_else}) after `#ifdef CONFIG_GB_ON` (line {ifdef}), which is taken with CONFIG_GB_ON=y"
    );
    assert_eq!(item.why, why);
    let text = report.to_string();
    assert!(text.contains("NOT COMPILED in this build (1)"), "{text}");
    assert!(
        text.contains(&format!("not compiled in this build: {why}")),
        "{text}"
    );

    // Without the configuration, either definition is followed.
    let report = analyse(&other, unconfigured());
    assert_eq!(report.expansions[0].name, "GB_SCALE");
    assert_eq!(replaced(&report), ["gb_scaled"]);
}

#[test]
fn uses_in_code_the_build_leaves_out_are_counted_not_followed() {
    let step = fix("#define GB_STEP 7", Some("#define GB_STEP 8"));
    let report = analyse(&step, configured());
    let expansion = &report.expansions[0];
    assert_eq!(expansion.name, "GB_STEP");
    let uses: Vec<u32> = expansion.uses.iter().map(|u| u.line).collect();
    assert_eq!(uses, [line_of("\treturn v + GB_STEP;")]);
    // `v += GB_STEP;` under `#if IS_ENABLED(CONFIG_GB_OFF)`, and under `#ifdef
    // CONFIG_GB_OFF` the `#if GB_STEP > 4` and `return v - GB_STEP;`.
    assert_eq!(expansion.uncompiled_uses, 3, "{report}");
    assert_eq!(expansion.functions, ["gb_stepped"]);
    assert_eq!(replaced(&report), ["gb_stepped"]);
    // `#if defined(GB_STEP) && ...` tests only whether it is defined, which a new value
    // does not change; `#if IS_ENABLED(CONFIG_GB_ON) || GB_STEP > 100` is true whatever
    // GB_STEP is; `#if GB_STEP > 4` is not compiled.
    assert!(report.not_analysable.is_empty(), "{report}");
    assert!(
        report
            .to_string()
            .contains("3 use(s) in code this build does not compile were left out"),
        "{report}"
    );

    // Without the configuration: every use is followed, every conditional reported.
    let report = analyse(&step, unconfigured());
    let expansion = &report.expansions[0];
    assert_eq!(expansion.uncompiled_uses, 0);
    assert_eq!(expansion.functions, ["gb_off_only", "gb_stepped"]);
    assert_eq!(replaced(&report), ["gb_off_only", "gb_stepped"]);
    let flagged: Vec<u32> = report.not_analysable.iter().map(|n| n.at.line).collect();
    assert_eq!(
        flagged,
        [
            line_of("#if GB_STEP > 4"),
            line_of("#if defined(GB_STEP) && IS_ENABLED(CONFIG_GB_MOD)"),
            line_of("#if IS_ENABLED(CONFIG_GB_ON) || GB_STEP > 100"),
        ],
        "{report}"
    );
}

#[test]
fn a_conditional_on_whether_a_macro_is_defined_is_reported_when_its_definition_goes() {
    let report = analyse(&fix("#define GB_STEP 7", None), configured());
    let flagged: Vec<u32> = report.not_analysable.iter().map(|n| n.at.line).collect();
    assert_eq!(
        flagged,
        [line_of("#if defined(GB_STEP) && IS_ENABLED(CONFIG_GB_MOD)")],
        "{report}"
    );
    assert!(report.not_analysable[0]
        .why
        .contains("GB_STEP is tested by a preprocessor conditional"));
}

#[test]
fn a_changed_conditional_in_code_the_build_leaves_out_is_not_compiled_not_unanalysable() {
    let changed = fix("#if GB_STEP > 4", Some("#if GB_STEP > 5"));
    let report = analyse(&changed, configured());
    assert!(report.not_analysable.is_empty(), "{report}");
    assert_eq!(report.not_compiled.len(), 1, "{report}");
    assert_eq!(
        report.not_compiled[0].directive.line,
        line_of("#ifdef CONFIG_GB_OFF")
    );
    assert!(report.not_compiled[0]
        .why
        .ends_with("with CONFIG_GB_OFF not set"));

    let report = analyse(&changed, unconfigured());
    assert!(report.not_compiled.is_empty());
    assert_eq!(report.not_analysable.len(), 1, "{report}");
    assert!(report.not_analysable[0]
        .why
        .contains("a preprocessor conditional outside any function changes"));
}

#[test]
fn the_json_report_carries_what_was_left_out_and_older_reports_still_read() {
    let report = analyse(
        &fix("#define GB_STEP 7", Some("#define GB_STEP 8")),
        configured(),
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["version"], analyzer::impact::REPORT_VERSION);
    assert_eq!(json["expansions"][0]["uncompiled_uses"], 3);
    let back: ImpactReport = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, report);

    let other = analyse(
        &fix(
            "#define GB_SCALE(x) ((x) * 5)",
            Some("#define GB_SCALE(x) ((x) * 6)"),
        ),
        configured(),
    );
    let json = serde_json::to_value(&other).unwrap();
    assert_eq!(
        json["not_compiled"][0]["directive_text"],
        "#ifdef CONFIG_GB_ON"
    );

    // A report stored before either field existed.
    let mut old = serde_json::to_value(&report).unwrap();
    old.as_object_mut().unwrap().remove("not_compiled");
    for expansion in old["expansions"].as_array_mut().unwrap() {
        expansion.as_object_mut().unwrap().remove("uncompiled_uses");
    }
    let read: ImpactReport = serde_json::from_value(old).unwrap();
    assert!(read.not_compiled.is_empty());
    assert_eq!(read.expansions[0].uncompiled_uses, 0);
}

#[test]
fn a_distribution_kernels_config_and_autoconf_h_read_alike() {
    let headers = Path::new("/usr/src/linux-headers-6.1.0-56-amd64");
    if !headers.join(".config").exists() {
        eprintln!("skipped: no {}", headers.display());
        return;
    }
    let dot = KernelConfig::read(&headers.join(".config")).expect(".config");
    let autoconf =
        KernelConfig::read(&headers.join("include/generated/autoconf.h")).expect("autoconf.h");
    assert!(dot.len() > 5_000, "{}", dot.len());
    for (name, value) in dot.symbols() {
        let read = autoconf.get(name);
        let alike = match (value, read) {
            // autoconf.h writes an int of 1 as it writes `y`, and a hex value `.config`
            // has without its `0x` with one: the same to the preprocessor.
            (ConfigValue::Int(1), Some(ConfigValue::Builtin)) => true,
            (ConfigValue::Int(v), Some(ConfigValue::Hex(h))) => u64::try_from(*v) == Ok(*h),
            (value, read) => Some(value) == read,
        };
        assert!(
            alike,
            "{name}: {value:?} in .config, {read:?} in autoconf.h"
        );
    }
    assert_eq!(dot.len(), autoconf.len());
    assert_eq!(dot.get("CONFIG_SMP"), Some(&ConfigValue::Builtin));
    assert_eq!(dot.get("CONFIG_EXT4_FS"), Some(&ConfigValue::Module));
    assert_eq!(
        evaluate_if(
            b"IS_ENABLED(CONFIG_EXT4_FS) && CONFIG_NR_CPUS > 64 && CONFIG_HZ == 250",
            &dot
        ),
        Truth::True
    );
}

#[test]
fn a_configuration_that_is_not_the_builds_is_caught_by_the_line_table() {
    // The fixture was built with CONFIG_GB_MOD=m, so gb_mod_module() is in the build; a
    // configuration saying =y would leave its lines out.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configured.config"),
    )
    .unwrap()
    .replace("CONFIG_GB_MOD=m", "CONFIG_GB_MOD=y");
    let wrong = KernelConfig::parse(text.as_bytes()).expect("configuration");
    let source = Some(TargetSource {
        tree: &tree().source,
        index: Some(&tree().index),
        config: Some(&wrong),
    });
    assert!(built("gb_mod_module"));
    let report = analyze_on(
        &fix("\treturn v + 22;", Some("\treturn v + 23;")),
        index(),
        source,
    )
    .expect("analysis");
    let line = line_of("\treturn v + 22;");
    assert!(report.not_compiled.is_empty(), "{report}");
    assert_eq!(replaced(&report), ["gb_mod_module"], "{report}");
    let caught: Vec<&str> = report
        .not_analysable
        .iter()
        .filter(|n| n.at.path == FILE && n.at.line == line)
        .map(|n| n.why.as_str())
        .collect();
    assert_eq!(caught.len(), 1, "{report}");
    assert!(
        caught[0].starts_with("the build's configuration says this line is not compiled (")
            && caught[0].ends_with("but the build has code of it: the configuration is not this build's, so code it left out elsewhere may be missed"),
        "{}",
        caught[0]
    );
    // With the build's own configuration, nothing is caught.
    let right = analyse(
        &fix("\treturn v + 22;", Some("\treturn v + 23;")),
        configured(),
    );
    assert!(right.not_analysable.is_empty(), "{right}");
    assert_eq!(replaced(&right), ["gb_mod_module"]);
}

#[test]
fn a_use_a_wrong_configuration_leaves_out_is_analysed_when_the_build_has_its_code() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/configured.config"),
    )
    .unwrap()
    .replace("CONFIG_GB_MOD=m", "CONFIG_GB_MOD=y");
    let wrong = KernelConfig::parse(text.as_bytes()).expect("configuration");
    let change = fix("#define GB_MODSTEP 9", Some("#define GB_MODSTEP 10"));
    let use_line = line_of("\tv -= GB_MODSTEP;");
    // With the build's own configuration, the use is followed as usual.
    let right = analyse(&change, configured());
    assert_eq!(replaced(&right), ["gb_mod_step"], "{right}");
    assert!(right.not_analysable.is_empty(), "{right}");
    // With one saying =y, the use would be left out; the line table says the build has
    // its code, so it is analysed after all, and the analysis says the configuration is
    // not this build's.
    let source = Some(TargetSource {
        tree: &tree().source,
        index: Some(&tree().index),
        config: Some(&wrong),
    });
    let report = analyze_on(&change, index(), source).expect("analysis");
    assert_eq!(replaced(&report), ["gb_mod_step"], "{report}");
    assert_eq!(report.expansions[0].uncompiled_uses, 0, "{report}");
    let caught: Vec<&str> = report
        .not_analysable
        .iter()
        .filter(|n| n.at.line == use_line)
        .map(|n| n.why.as_str())
        .collect();
    assert_eq!(caught.len(), 1, "{report}");
    assert!(
        caught[0].contains("this use of GB_MODSTEP is not compiled, but the build has code of it")
    );
}

#[test]
fn a_fix_that_moves_a_conditional_is_not_judged_by_the_targets_conditionals() {
    // The insertion sits between lines the build leaves out (`v += GB_STEP;` under
    // `#if IS_ENABLED(CONFIG_GB_OFF)`), but it closes that group first: its new line is
    // compiled, in gb_off_only(), which the live patch must replace.
    let text = format!(
        "--- a/{FILE}\n+++ b/{FILE}\n@@ -26,3 +26,6 @@\n #if IS_ENABLED(CONFIG_GB_OFF)\n \tv += GB_STEP;\n\
         +#endif\n+\tv = v + 1;\n+#if IS_ENABLED(CONFIG_GB_OFF)\n #endif\n"
    );
    assert_eq!(line_of("#if IS_ENABLED(CONFIG_GB_OFF)"), 26);
    let change = patch::parse(text.as_bytes()).expect("diff");
    let report = analyse(&change, configured());
    assert!(report.not_compiled.is_empty(), "{report}");
    assert_eq!(replaced(&report), ["gb_off_only"], "{report}");
}
