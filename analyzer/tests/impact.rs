//! Impact analysis of small fixes against the gcc-built fixtures: which functions a live
//! patch must replace, and why. The answers are what gcc's output requires (see the
//! `dwarf` and `symbols` tests for the facts they rest on).

mod common;

use analyzer::expand::SourceLine;
use analyzer::impact::{analyze, AnalysisError, ImpactReport, Step, REPORT_VERSION};
use analyzer::index::{KernelIndex, ObjectIndex};
use analyzer::patch;
use common::Build;
use std::sync::OnceLock;

/// The fixtures' index, built once for all tests here (DWARF 5), and read back from its
/// on-disk form: every answer below comes through the index file's encoding.
fn index() -> &'static KernelIndex {
    static INDEX: OnceLock<KernelIndex> = OnceLock::new();
    INDEX.get_or_init(|| {
        let image = Build::compile(5).vmlinux();
        let object = ObjectIndex::build("vmlinux", &image, &|_| {}).expect("index");
        let built = KernelIndex {
            objects: vec![object],
        };
        let read = KernelIndex::from_bytes(&built.to_bytes()).expect("read back");
        assert_eq!(read, built);
        read
    })
}

/// A fix replacing line `line` of a fixture file.
fn fix(file: &str, line: u32) -> patch::Patch {
    let path = format!("analyzer/tests/fixtures/{file}");
    let text = format!("--- a/{path}\n+++ b/{path}\n@@ -{line},1 +{line},1 @@\n-old\n+new\n");
    patch::parse(text.as_bytes()).expect("diff")
}

fn report(file: &str, line: u32) -> ImpactReport {
    analyze(&fix(file, line), index()).expect("analysis")
}

fn replaced(report: &ImpactReport) -> Vec<(String, u32)> {
    report
        .replace
        .iter()
        .map(|r| (r.symbol.clone(), r.old_sympos))
        .collect()
}

fn r(name: &str) -> (String, u32) {
    (name.to_owned(), 0)
}

#[test]
fn a_header_inline_change_replaces_every_caller_it_was_inlined_into() {
    let report = report("inlines.h", 8);
    assert_eq!(report.version, REPORT_VERSION);
    assert_eq!(
        report
            .changed_functions
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["bump"]
    );
    // count_a included, although the line table has no code of inlines.h:8 in it.
    assert_eq!(
        replaced(&report),
        [r("count_a"), r("count_b"), r("count_c"), r("pair_a")]
    );
    let pair = report
        .replace
        .iter()
        .find(|x| x.symbol == "pair_a")
        .unwrap();
    assert_eq!(
        pair.reasons,
        [
            "bump() changed (code of analyzer/tests/fixtures/inlines.h:8)",
            "bump() is inlined into pair_a() at inlines.h:14 (through bump_pair())",
            "pair_a has an ftrace entry",
        ]
    );
    assert!(matches!(
        &pair.path[1],
        Step::Inlined { through, .. } if through == &["bump_pair".to_owned()]
    ));
    assert!(report.unpatchable.is_empty());
    assert_eq!(report.pitfalls.len(), 1);
    assert_eq!(
        report.pitfalls[0].detail,
        "a header changes: 4 function(s) to replace in vmlinux hold its code"
    );
}

#[test]
fn a_notrace_function_is_replaced_through_the_function_it_was_inlined_into() {
    let report = report("clones.c", 67);
    assert_eq!(replaced(&report), [r("calls_raw")]);
    assert_eq!(report.unpatchable.len(), 1);
    assert_eq!(report.unpatchable[0].symbol, "raw_add");
    assert_eq!(
        report.unpatchable[0].why,
        "no ftrace entry (notrace or noinstr)"
    );
    // calls_raw is reached directly (raw_add's code is inlined in it), which is the
    // shortest reason; the out-of-line raw_add is reported as unpatchable.
    assert_eq!(
        report.replace[0].reasons,
        [
            "raw_add() changed (code of analyzer/tests/fixtures/clones.c:67)",
            "raw_add() is inlined into calls_raw() at clones.c:68",
            "calls_raw has an ftrace entry",
        ]
    );
}

#[test]
fn an_isra_clone_is_replaced_through_its_callers() {
    let report = report("clones.c", 12);
    assert_eq!(replaced(&report), [r("use_req")]);
    assert_eq!(report.unpatchable[0].symbol, "req_len.isra.0");
    assert_eq!(
        report.unpatchable[0].why,
        "clone with a changed calling convention: parameter `r` was removed (IPA-SRA)"
    );
    assert_eq!(
        report.replace[0].reasons.last().unwrap(),
        "use_req has an ftrace entry"
    );
    assert!(report.replace[0]
        .reasons
        .contains(&"use_req() calls req_len.isra.0".to_owned()));
    // The same way as steps, for the graph: the clone's ABI change is named on its step.
    let abi = "parameter `r` was removed (IPA-SRA)".to_owned();
    assert_eq!(
        report.replace[0].path,
        [
            Step::Changed {
                function: "req_len".into(),
                evidence: "code of analyzer/tests/fixtures/clones.c:12".into(),
            },
            Step::Blocked {
                symbol: "req_len.isra.0".into(),
                why: format!("clone with a changed calling convention: {abi}"),
                abi_change: Some(abi),
            },
            Step::Called {
                caller: "use_req".into(),
                callee: "req_len.isra.0".into(),
                tail: false,
            },
            Step::Entry {
                symbol: "use_req".into(),
            },
        ]
    );
    let sentences: Vec<String> = report.replace[0].path.iter().map(Step::to_string).collect();
    assert_eq!(sentences, report.replace[0].reasons);
    assert!(report.replace[0].file.ends_with("fixtures/clones.c"));
    assert_eq!(
        report.unpatchable[0].path.last(),
        report.replace[0].path.get(1)
    );
    // The changed function knows its changed line.
    assert_eq!(report.changed_functions[0].name, "req_len");
    assert_eq!(
        report.changed_functions[0].lines,
        [SourceLine {
            path: "analyzer/tests/fixtures/clones.c".into(),
            line: 12
        }]
    );
}

#[test]
fn a_constprop_clone_is_replaced_through_its_tail_callers() {
    let report = report("clones.c", 29);
    assert_eq!(replaced(&report), [r("use_scaled_a"), r("use_scaled_b")]);
    assert!(report.replace[0]
        .reasons
        .contains(&"use_scaled_a() tail-calls scaled.constprop.0".to_owned()));
}

#[test]
fn a_change_in_the_cold_path_replaces_the_whole_function() {
    let report = report("clones.c", 59);
    assert_eq!(replaced(&report), [r("validate")]);
    assert!(report.replace[0]
        .reasons
        .contains(&"validate.cold is part of validate, replaced with it".to_owned()));
}

#[test]
fn a_split_function_replaces_its_part_and_the_callers_holding_its_head() {
    let report = report("clones.c", 42);
    assert_eq!(
        replaced(&report),
        [
            r("check_slow.part.0"),
            r("use_check_a"),
            r("use_check_b"),
            r("use_check_c"),
            r("use_check_d")
        ]
    );
}

#[test]
fn duplicated_static_names_carry_their_sympos() {
    assert_eq!(replaced(&report("dup_b.c", 6)), [("helper".to_owned(), 2)]);
    assert_eq!(replaced(&report("dup_a.c", 6)), [("helper".to_owned(), 1)]);
}

#[test]
fn init_code_needs_no_replacement() {
    let report = report("clones.c", 71);
    assert!(report.replace.is_empty(), "{:?}", report.replace);
    assert_eq!(report.unpatchable[0].symbol, "clones_init");
    assert!(report.unpatchable[0].resolution.contains("next boot"));
}

#[test]
fn noinstr_code_without_callers_cannot_be_live_patched() {
    let report = report("clones.c", 74);
    assert!(report.replace.is_empty());
    assert_eq!(report.unpatchable[0].symbol, "enter_from_user");
    assert!(report.unpatchable[0]
        .resolution
        .contains("cannot be live-patched"));
}

#[test]
fn a_file_outside_the_object_is_named() {
    // With a known file beside it: a report, naming the unknown one.
    let both = format!(
        "--- a/drivers/gpu/x.c\n+++ b/drivers/gpu/x.c\n@@ -3 +3 @@\n-a\n+b\n{}",
        "--- a/analyzer/tests/fixtures/dup_a.c\n+++ b/analyzer/tests/fixtures/dup_a.c\n@@ -6 +6 @@\n-a\n+b\n"
    );
    let report = analyze(&patch::parse(both.as_bytes()).unwrap(), index()).expect("analysis");
    assert_eq!(report.files_without_code, ["drivers/gpu/x.c"]);
    assert_eq!(replaced(&report), [("helper".to_owned(), 1)]);

    // Alone: an error that says what is wrong.
    let patch =
        patch::parse(b"--- a/drivers/gpu/x.c\n+++ b/drivers/gpu/x.c\n@@ -3 +3 @@\n-a\n+b\n")
            .unwrap();
    let error = analyze(&patch, index()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "none of the files the fix changes (drivers/gpu/x.c) is known to vmlinux: is the fix for this kernel, with paths relative to the top of the tree?"
    );
    let new_only =
        patch::parse(b"--- /dev/null\n+++ b/drivers/new.c\n@@ -0,0 +1 @@\n+int x;\n").unwrap();
    assert!(matches!(
        analyze(&new_only, index()),
        Err(AnalysisError::NothingChanged)
    ));
}

#[test]
fn callers_in_other_units_are_found_through_their_prototype() {
    // dup_a.c calls cross_unit_raw() through kernel.h's declaration: its DWARF names the
    // declaration, which the index joins to the definition in cross.c.
    let report = report("cross.c", 6);
    assert_eq!(replaced(&report), [r("use_cross")]);
    assert_eq!(report.unpatchable.len(), 1);
    assert_eq!(report.unpatchable[0].symbol, "cross_unit_raw");
    assert_eq!(
        report.replace[0].reasons,
        [
            "cross_unit_raw() changed (code of analyzer/tests/fixtures/cross.c:6)",
            "cross_unit_raw cannot be replaced: no ftrace entry (notrace or noinstr)",
            "use_cross() calls cross_unit_raw",
            "use_cross has an ftrace entry",
        ]
    );
}

#[test]
fn a_module_is_analysed_with_vmlinux_and_named_by_its_modinfo() {
    let build = Build::compile(4);
    let vmlinux = build.vmlinux();
    let module = build.module_named("fixture_mod");
    assert_eq!(
        analyzer::index::module_name(&module).as_deref(),
        Some("fixture_mod")
    );
    let index = KernelIndex {
        objects: vec![
            ObjectIndex::build("vmlinux", &vmlinux, &|_| {}).expect("vmlinux"),
            ObjectIndex::build("fixture_mod", &module, &|_| {}).expect("module"),
        ],
    };
    let bytes = index.to_bytes();
    // Reading only the objects a fix's files are in: the stubs are not in the module.
    let names = |paths: &[&str]| -> Vec<String> {
        KernelIndex::from_bytes_for_paths(&bytes, paths)
            .expect("read")
            .objects
            .into_iter()
            .map(|o| o.name)
            .collect()
    };
    assert_eq!(names(&["analyzer/tests/fixtures/stubs.c"]), ["vmlinux"]);
    assert_eq!(
        names(&["analyzer/tests/fixtures/dup_b.c"]),
        ["vmlinux", "fixture_mod"]
    );
    assert!(names(&["drivers/gpu/x.c"]).is_empty());
    let index = KernelIndex::from_bytes(&bytes).expect("read back");
    let report = analyze(&fix("dup_b.c", 6), &index).expect("analysis");
    assert_eq!(report.objects, ["vmlinux", "fixture_mod"]);
    let found: Vec<(&str, &str, u32)> = report
        .replace
        .iter()
        .map(|r| (r.object.as_str(), r.symbol.as_str(), r.old_sympos))
        .collect();
    // In the module, as in vmlinux, the second of the two static helper()s.
    assert_eq!(
        found,
        [("vmlinux", "helper", 2), ("fixture_mod", "helper", 2)]
    );
    // A module's build-id is its own.
    assert_ne!(index.objects[0].build_id, index.objects[1].build_id);
    assert!(index.objects[1].build_id.is_some());
}

#[test]
fn a_changed_signature_of_an_exported_function_is_a_pitfall() {
    let diff = "--- a/analyzer/tests/fixtures/cross.c\n+++ b/analyzer/tests/fixtures/cross.c\n\
                @@ -4,3 +4,3 @@\n-notrace int cross_unit_raw(int v)\n+notrace int cross_unit_raw(long v)\n {\n \treturn v * 11 + 2;\n";
    let report = analyze(&patch::parse(diff.as_bytes()).unwrap(), index()).unwrap();
    let exported: Vec<(&str, u32, &str)> = report
        .pitfalls
        .iter()
        .filter(|p| p.kind == analyzer::pitfalls::PitfallKind::ExportedSignature)
        .map(|p| (p.path.as_str(), p.line, p.detail.as_str()))
        .collect();
    assert_eq!(
        exported,
        [(
            "analyzer/tests/fixtures/cross.c",
            4,
            "the signature of cross_unit_raw() changes, and vmlinux exports it: modules built against the old signature keep calling it that way"
        )]
    );
    // req_len() is static: a signature change there concerns only its callers, which
    // the analysis lists anyway.
    let diff = "--- a/analyzer/tests/fixtures/clones.c\n+++ b/analyzer/tests/fixtures/clones.c\n\
                @@ -10,3 +10,3 @@\n-static noinline int req_len(struct req *r)\n+static noinline int req_len(const struct req *r)\n {\n \treturn r->len * 3 + 1;\n";
    let report = analyze(&patch::parse(diff.as_bytes()).unwrap(), index()).unwrap();
    assert!(report
        .pitfalls
        .iter()
        .all(|p| p.kind != analyzer::pitfalls::PitfallKind::ExportedSignature));
}

/// The fixtures' vmlinux with the first child DIE of `file`'s compilation unit given an
/// abbreviation code no table defines; returns the image and that unit's offset.
fn with_a_broken_unit(file: &str) -> (Vec<u8>, u64) {
    use object::{Object, ObjectSection};
    let mut image = Build::compile(5).vmlinux();
    let (start, unit_offset, child) = {
        let elf = object::File::parse(&*image).expect("ELF");
        let section = elf.section_by_name(".debug_info").expect(".debug_info");
        let (start, _) = section.file_range().expect("in the file");
        let load = |id: gimli::SectionId| -> Result<&[u8], gimli::Error> {
            Ok(elf
                .section_by_name(id.name())
                .and_then(|s| s.data().ok())
                .unwrap_or(&[]))
        };
        let sections = gimli::DwarfSections::load(load).expect("sections");
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
        let mut units = dwarf.units();
        let mut found = None;
        while let Some(header) = units.next().expect("unit header") {
            let unit = dwarf.unit(header).expect("unit");
            let mut entries = unit.entries();
            let root = entries.next_dfs().expect("DIE").expect("root DIE");
            let name = root
                .attr_value(gimli::DW_AT_name)
                .and_then(|v| dwarf.attr_string(&unit, v).ok())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.ends_with(file) {
                let child = entries.next_dfs().expect("DIE").expect("a child DIE");
                let unit_offset = header.offset().0;
                found = Some((unit_offset, unit_offset + child.offset().0));
                break;
            }
        }
        let (unit_offset, child) = found.unwrap_or_else(|| panic!("no unit for {file}"));
        (start as usize, unit_offset as u64, child)
    };
    // A one-byte ULEB128 code far beyond the few abbreviations a fixture unit has.
    assert!(image[start + child] < 0x80, "a one-byte abbreviation code");
    image[start + child] = 0x7f;
    (image, unit_offset)
}

#[test]
fn a_unit_that_cannot_be_decoded_is_skipped_named_and_reported_where_it_matters() {
    let (image, unit_offset) = with_a_broken_unit("dup_b.c");
    let object = ObjectIndex::build("vmlinux", &image, &|_| {}).expect("the rest is indexed");
    assert_eq!(object.skipped.len(), 1, "{:?}", object.skipped);
    let skipped = &object.skipped[0];
    assert_eq!(skipped.offset, unit_offset);
    assert!(
        skipped
            .name
            .as_deref()
            .is_some_and(|n| n.ends_with("fixtures/dup_b.c")),
        "{skipped:?}"
    );
    assert!(
        skipped.error.to_lowercase().contains("abbreviation"),
        "{skipped:?}"
    );
    let damaged = KernelIndex::from_bytes(
        &KernelIndex {
            objects: vec![object],
        }
        .to_bytes(),
    )
    .expect("read back");

    // A fix in an intact unit: the same answer as from the whole index.
    for (file, line) in [("clones.c", 67), ("clones.c", 12), ("dup_a.c", 6)] {
        let whole = analyze(&fix(file, line), index()).expect("analysis");
        let partial = analyze(&fix(file, line), &damaged).expect("analysis");
        assert_eq!(partial, whole, "{file}:{line}");
        assert!(partial.incomplete.is_empty());
    }
    // A fix in the broken unit: incomplete there, by name; and so is a header change,
    // whose code may be inlined into the unit that could not be read.
    let report = analyze(&fix("dup_b.c", 6), &damaged).expect("analysis");
    assert_eq!(report.incomplete.len(), 1, "{report}");
    let note = &report.incomplete[0];
    assert_eq!(note.unit_offset, unit_offset);
    assert!(note.why.contains("dup_b.c"), "{}", note.why);
    assert!(report.to_string().contains("INCOMPLETE"), "{report}");
    let header = analyze(&fix("inlines.h", 8), &damaged).expect("analysis");
    assert_eq!(header.incomplete.len(), 1, "{header}");
    assert!(
        header.incomplete[0].why.contains("inlines.h"),
        "{}",
        header.incomplete[0].why
    );
}
