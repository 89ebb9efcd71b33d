//! Function tables read from real gcc output, built here the way the kernel builds:
//! `-O2 -g -pg -mfentry -mrecord-mcount`, notrace through `no_instrument_function`.
//!
//! Every expectation below is what gcc 12 produced for `tests/fixtures/*.c` (checked
//! with `nm` and `readelf` when the fixtures were written), not what one might expect.

mod common;

use analyzer::symbols::{read_functions, Binding, CloneSuffix, FtraceTable, FunctionTable};
use common::{run, Build};
use std::process::Command;

fn vmlinux(dwarf: u8) -> FunctionTable {
    read_functions("vmlinux", &Build::compile(dwarf).vmlinux()).expect("readable")
}

fn module() -> FunctionTable {
    read_functions("fixture", &Build::compile(5).module()).expect("readable")
}

fn traceable(table: &FunctionTable, name: &str) -> bool {
    table
        .by_name(name)
        .unwrap_or_else(|| panic!("{name} not in {:?}", names(table)))
        .ftrace_entry
}

fn names(table: &FunctionTable) -> Vec<&str> {
    let mut names: Vec<&str> = table.functions.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    names
}

#[test]
fn every_function_and_clone_gcc_emitted_is_listed() {
    for dwarf in [4, 5] {
        let table = vmlinux(dwarf);
        assert_eq!(table.ftrace_table, FtraceTable::McountLocSymbols);
        assert_eq!(
            names(&table),
            [
                "__fentry__",
                "calls_raw",
                "check_slow.part.0",
                "clones_init",
                "count_a",
                "count_b",
                "count_c",
                "cross_unit_raw",
                "drop_flags.constprop.0",
                "enter_from_user",
                "fixture_entry",
                "helper",
                "helper",
                "no_macro",
                "pair_a",
                "raw_add",
                "read_default",
                "read_limit",
                "report",
                "req_len.isra.0",
                "scaled.constprop.0",
                "sink",
                "use_check_a",
                "use_check_b",
                "use_check_c",
                "use_check_d",
                "use_clamp_a",
                "use_clamp_b",
                "use_cross",
                "use_drop",
                "use_helper_a",
                "use_helper_b",
                "use_req",
                "use_scaled_a",
                "use_scaled_b",
                "use_scaled_here",
                "use_scaled_there",
                "validate",
                "validate.cold",
            ],
            "DWARF {dwarf}"
        );
    }
}

#[test]
fn clone_suffixes_and_base_names() {
    let table = vmlinux(5);
    let clone = |name: &str| table.by_name(name).unwrap().clone.clone();
    assert_eq!(clone("req_len.isra.0"), [CloneSuffix::Isra(0)]);
    assert_eq!(clone("scaled.constprop.0"), [CloneSuffix::Constprop(0)]);
    assert_eq!(clone("check_slow.part.0"), [CloneSuffix::Part(0)]);
    assert_eq!(clone("validate.cold"), [CloneSuffix::Cold(None)]);
    assert!(clone("validate").is_empty());
    let validate: Vec<&str> = table
        .with_base_name("validate")
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(validate.len(), 2);
    assert!(validate.contains(&"validate") && validate.contains(&"validate.cold"));
    assert!(table.by_name("validate.cold").unwrap().is_cold_part());
}

#[test]
fn ftrace_entries_come_from_the_mcount_table() {
    let table = vmlinux(5);
    for name in [
        "calls_raw",
        "req_len.isra.0",
        "scaled.constprop.0",
        "check_slow.part.0",
        "validate",
        "use_req",
        "use_helper_a",
    ] {
        assert!(traceable(&table, name), "{name} has an ftrace entry");
    }
    // notrace, the cold part (no entry of its own), init and noinstr code.
    for name in [
        "raw_add",
        "validate.cold",
        "clones_init",
        "enter_from_user",
        "__fentry__",
        "sink",
    ] {
        assert!(!traceable(&table, name), "{name} has no ftrace entry");
    }
    let helpers: Vec<bool> = table
        .functions
        .iter()
        .filter(|f| f.name == "helper")
        .map(|f| f.ftrace_entry)
        .collect();
    assert_eq!(helpers, [true, true]);
}

#[test]
fn sections_and_bindings() {
    let table = vmlinux(5);
    let get = |name: &str| table.by_name(name).unwrap();
    assert_eq!(get("validate").section, ".text");
    assert_eq!(get("validate").binding, Binding::Global);
    assert_eq!(get("validate.cold").section, ".text");
    assert_eq!(get("req_len.isra.0").binding, Binding::Local);
    assert_eq!(get("clones_init").section, ".init.text");
    assert_eq!(get("enter_from_user").section, ".noinstr.text");
    assert!(get("validate").size > 0);
}

#[test]
fn duplicated_static_names_get_sympos_in_address_order() {
    let table = vmlinux(5);
    let mut helpers: Vec<(u64, u32)> = table
        .functions
        .iter()
        .filter(|f| f.name == "helper")
        .map(|f| (f.address, f.old_sympos))
        .collect();
    helpers.sort_unstable();
    assert_eq!(helpers.iter().map(|h| h.1).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(table.by_name("validate").unwrap().old_sympos, 0);
}

#[test]
fn a_relocatable_module_reads_its_table_through_relocations() {
    let table = module();
    assert_eq!(table.object, "fixture");
    assert_eq!(table.ftrace_table, FtraceTable::McountLocSection);
    assert!(traceable(&table, "validate"));
    assert!(traceable(&table, "req_len.isra.0"));
    assert!(traceable(&table, "use_helper_b"));
    assert!(!traceable(&table, "raw_add"));
    assert!(!traceable(&table, "validate.cold"));
    // In a module, kallsyms order is symbol-table order: dup_a.o's helper comes first.
    let helpers: Vec<u32> = table
        .functions
        .iter()
        .filter(|f| f.name == "helper")
        .map(|f| f.old_sympos)
        .collect();
    assert_eq!(helpers, [1, 2]);
}

#[test]
fn a_stripped_file_is_refused_with_a_reason() {
    let build = Build::compile(5);
    let stripped = build.dir.path().join("stripped.o");
    run(Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&build.objects[0]));
    let data = std::fs::read(&stripped).unwrap();
    let err = read_functions("stripped", &data).unwrap_err();
    assert!(err.to_string().contains("no symbol table"), "{err}");
}

#[test]
fn exports_are_read_from_their_ksymtab_symbols() {
    let table = vmlinux(5);
    let exported: Vec<&str> = table
        .functions
        .iter()
        .filter(|f| f.exported)
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(exported, ["cross_unit_raw"]);
}

fn ftrace_entries(table: &FunctionTable) -> Vec<(String, bool)> {
    let mut entries: Vec<(String, bool)> = table
        .functions
        .iter()
        .map(|f| (f.name.clone(), f.ftrace_entry))
        .collect();
    entries.sort();
    entries
}

#[test]
fn on_ibt_builds_the_ftrace_entry_follows_endbr64() {
    let build = Build::compile_with(5, &["-fcf-protection=branch"]);
    let image = build.vmlinux();
    let table = read_functions("vmlinux", &image).expect("readable");
    // The build really is IBT: calls_raw starts with endbr64, and its mcount entry is 4
    // bytes in.
    use object::{Object, ObjectSymbol};
    let file = object::File::parse(&*image).expect("ELF");
    let calls_raw = file
        .symbols()
        .find(|s| s.name() == Ok("calls_raw"))
        .expect("calls_raw");
    let text = file.section_by_name(".text").expect(".text");
    use object::ObjectSection;
    let offset = (calls_raw.address() - text.address()) as usize;
    assert_eq!(
        &text.data().unwrap()[offset..offset + 4],
        [0xf3, 0x0f, 0x1e, 0xfa]
    );
    assert!(traceable(&table, "calls_raw"));
    assert!(traceable(&table, "use_req"));
    assert!(!traceable(&table, "raw_add"));
    assert!(!traceable(&table, "enter_from_user"));
    // Exactly the functions a non-IBT build says are traceable.
    assert_eq!(ftrace_entries(&table), ftrace_entries(&vmlinux(5)));
}

#[test]
fn a_debug_only_module_reads_like_the_module_and_a_debug_only_vmlinux_is_refused() {
    let build = Build::compile_with(5, &["-fcf-protection=branch"]);
    let module = read_functions("fixture", &build.module()).expect("module");
    // No code in the debug-only file: the entries come from the table's relocations.
    let split = read_functions("fixture", &build.debug_only("fixture.ko")).expect("split");
    assert_eq!(ftrace_entries(&split), ftrace_entries(&module));
    assert!(traceable(&split, "calls_raw"));

    build.vmlinux();
    let error = read_functions("vmlinux", &build.debug_only("vmlinux")).unwrap_err();
    assert!(error.to_string().contains("--only-keep-debug"), "{error}");
}
